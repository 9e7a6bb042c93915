//! The agent container: plugins are verified against the manifest before
//! they run, and a rebuilt plugin is picked up without touching the runner.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use attache_tests::{assemble, build_probe, component, fails, ok, root, runner};
use serde_json::Value;

/// `attache` with its own cache and state directories beside `out`.
fn attache_isolated(out: &Path) -> Command {
    attache_tests::attache_isolated(&out.with_extension("cache"), &out.with_extension("state"))
}

fn info(agent: &Path, cache: &Path, plugin: &str) -> Value {
    let mut c = runner(agent);
    c.arg("--cache-dir")
        .arg(cache)
        .args(["info", "--plugin", plugin]);
    serde_json::from_str(&ok(&mut c)).expect("info prints JSON")
}

#[test]
fn a_plugin_that_does_not_match_the_manifest_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    assemble(&agent, &[("probe", &component("probe"))]);
    let cache = t.path().join("cache");
    assert_eq!(info(&agent, &cache, "probe")["plugins"][0]["name"], "probe");

    let wasm = agent.join("plugins/probe.wasm");
    let mut bytes = fs::read(&wasm).expect("read");
    bytes.push(0);
    fs::write(&wasm, &bytes).expect("write");
    let mut c = runner(&agent);
    c.arg("--cache-dir")
        .arg(&cache)
        .args(["info", "--plugin", "probe"]);
    let err = fails(&mut c);
    assert!(err.contains("does not match the manifest"), "{err}");
    assert!(err.contains("refusing to load it"), "{err}");
}

#[test]
fn a_rebuilt_plugin_is_used_without_rebuilding_the_runner() {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    let cache = t.path().join("cache");
    // A target directory of its own: the test's cargo is still running.
    let target_dir = root().join("target/test-rebuild");
    let runner_before =
        blake3::hash(&fs::read(attache_tests::agent_dir().join("guest-runner")).expect("runner"));

    let mut seen = Vec::new();
    for version in ["1.0.0-first", "2.0.0-second"] {
        let wasm = build_probe(version, &target_dir);
        assemble(&agent, &[("probe", &wasm)]);
        let v = info(&agent, &cache, "probe");
        assert_eq!(v["plugins"][0]["version"], version);
        let out = t.path().join("probe.stream");
        let mut c = runner(&agent);
        c.arg("--cache-dir")
            .arg(&cache)
            .args([
                "backup",
                "--plugin",
                "probe",
                "--select",
                "probe://version",
                "--output",
            ])
            .arg(&out);
        ok(&mut c);
        let s = fs::read(&out).expect("stream");
        assert!(
            s.windows(version.len()).any(|w| w == version.as_bytes()),
            "backup ran the new build"
        );
        seen.push(
            v["container"]
                .as_str()
                .expect("container version")
                .to_owned(),
        );
        let runner_now = blake3::hash(&fs::read(agent.join("guest-runner")).expect("runner"));
        assert_eq!(runner_now, runner_before, "the runner is the same binary");
    }
    assert_ne!(
        seen[0], seen[1],
        "the container version follows its content"
    );
    // The container carried each build precompiled for this runner: the
    // runner compiled nothing itself.
    let manifest: Value =
        serde_json::from_slice(&fs::read(agent.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    assert!(
        manifest["plugins"][0]["precompiled"]["engine"].is_string(),
        "{manifest}"
    );
    let cached = fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(cached, 0, "nothing was compiled in the runner");
}

#[test]
fn a_precompiled_form_that_does_not_match_is_never_run() {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    assemble(&agent, &[("probe", &component("probe"))]);
    let cache = t.path().join("cache");
    // Replaced by another valid compiled component (the filesystem plugin's):
    // it loads, but it is not what the manifest vouches for.
    let other = t.path().join("other");
    assemble(&other, &[("probe", &component("filesystem"))]);
    fs::copy(
        other.join("plugins/probe.cwasm"),
        agent.join("plugins/probe.cwasm"),
    )
    .expect("copy");
    let mut c = runner(&agent);
    c.arg("--cache-dir")
        .arg(&cache)
        .args(["--log", "warn", "info", "--plugin", "probe"]);
    let o = attache_tests::output(&mut c);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        v["plugins"][0]["name"], "probe",
        "the verified component ran"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("precompiled form refused"), "{err}");
    assert_eq!(
        fs::read_dir(&cache).expect("cache").count(),
        1,
        "it was compiled instead"
    );
}

#[test]
fn a_damaged_cache_entry_is_recompiled() {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    // Without precompiled forms, so that the runner compiles and caches.
    attache_tests::assemble_with(
        &agent,
        &[("probe", &component("probe"))],
        &["--no-precompile"],
    );
    let cache = t.path().join("cache");
    info(&agent, &cache, "probe");
    let entry = fs::read_dir(&cache)
        .expect("cache")
        .next()
        .expect("one entry")
        .expect("entry")
        .path();
    fs::write(&entry, b"garbage").expect("damage");
    assert_eq!(info(&agent, &cache, "probe")["plugins"][0]["name"], "probe");
    assert!(
        fs::read(&entry).expect("rewritten").len() > 1000,
        "the entry was rewritten"
    );
}

/// `attache container build` of `agent` into `out`, with a state directory
/// of its own beside `out` (no hypervisors registered: nothing is pushed).
fn build(agent: &Path, out: &Path) -> Value {
    let mut c = attache_isolated(out);
    c.arg("--agent-dir")
        .arg(agent)
        .args(["container", "build", "--json", "--out"])
        .arg(out);
    serde_json::from_str(&ok(&mut c)).expect("container build --json")
}

#[test]
fn the_container_is_an_iso_and_disk_images_rebuilt_only_on_change() {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    let out = t.path().join("containers");
    assemble(
        &agent,
        &[
            ("filesystem", &component("filesystem")),
            ("probe", &component("probe")),
        ],
    );
    let first = build(&agent, &out);
    assert_eq!(first["built"], true);
    // The ISO holds the agent as it is, modes included (Rock Ridge).
    let iso = PathBuf::from(first["iso"].as_str().expect("iso"));
    let x = t.path().join("extracted");
    ok(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/"])
        .arg(&x));
    for f in [
        "guest-runner",
        "manifest.json",
        "plugins/filesystem.wasm",
        "plugins/probe.wasm",
    ] {
        assert_eq!(
            fs::read(x.join(f)).expect(f),
            fs::read(agent.join(f)).expect(f),
            "{f} differs"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(x.join("guest-runner"))
            .expect("runner")
            .permissions()
            .mode()
            & 0o111,
        0o111,
        "the runner stays executable"
    );
    // One image per format, each holding the same bytes as the ISO.
    let disks = first["disks"].as_array().expect("disks");
    assert_eq!(disks.len(), 4);
    for d in disks {
        let (format, path) = (d[0].as_str().expect("format"), d[1].as_str().expect("path"));
        let info = ok(Command::new("qemu-img").args(["info", "--output=json", path]));
        let info: Value = serde_json::from_str(&info).expect("qemu-img json");
        assert_eq!(info["format"], format, "{path}");
        let back = t.path().join(format!("back-{format}.raw"));
        ok(Command::new("qemu-img")
            .args(["convert", "-O", "raw", path])
            .arg(&back));
        let n = fs::metadata(&iso).expect("iso").len() as usize;
        assert_eq!(
            &fs::read(&back).expect("raw")[..n],
            &fs::read(&iso).expect("iso")[..],
            "{format} holds the ISO"
        );
    }
    // Unchanged agent: nothing rebuilt.
    let again = build(&agent, &out);
    assert_eq!(again["built"], false);
    assert_eq!(again["version"], first["version"]);
    // A changed plugin: a new container, same runner.
    let t2 = tempfile::tempdir().expect("tempdir");
    let other = t2.path().join("filesystem.wasm");
    let mut bytes = fs::read(component("filesystem")).expect("wasm");
    // Other bytes, as a rebuilt plugin has: a custom section (id 0, 6 bytes:
    // the name "test" and one byte) keeps it a valid component.
    bytes.extend_from_slice(&[0, 6, 4, b't', b'e', b's', b't', 1]);
    fs::write(&other, &bytes).expect("write");
    assemble(
        &agent,
        &[("filesystem", &other), ("probe", &component("probe"))],
    );
    let changed = build(&agent, &out);
    assert_eq!(changed["built"], true);
    assert_ne!(changed["version"], first["version"]);
    // A component that does not match the manifest is never packed.
    fs::write(agent.join("plugins/probe.wasm"), b"tampered").expect("write");
    let mut c = attache_isolated(&out);
    c.arg("--agent-dir")
        .arg(&agent)
        .args(["container", "build", "--out"])
        .arg(&out);
    let e = fails(&mut c);
    assert!(e.contains("does not match the manifest"), "{e}");
}

#[test]
fn a_stale_hypervisor_does_not_fail_the_build_for_the_others() {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    let out = t.path().join("containers");
    assemble(&agent, &[("filesystem", &component("filesystem"))]);
    let hv = |name: &str| {
        let (vms, ds) = (
            t.path().join(format!("{name}-vms")),
            t.path().join(format!("{name}-ds")),
        );
        fs::create_dir_all(&vms).expect("mkdir");
        let mut c = attache_isolated(&out);
        c.arg("--agent-dir")
            .arg(&agent)
            .args(["hypervisor", "add", name, "--driver", "qemu", "--vm-dir"])
            .arg(&vms)
            .arg("--datastore")
            .arg(&ds);
        ok(&mut c);
        (vms, ds)
    };
    let (_, good_ds) = hv("good");
    let (stale_vms, stale_ds) = hv("stale");
    // The stale one's VM directory goes away; its registration stays.
    fs::remove_dir_all(&stale_vms).expect("rm");
    fs::remove_dir_all(&stale_ds).expect("rm");
    // A changed plugin: a new container to push.
    let other = t.path().join("filesystem.wasm");
    let mut bytes = fs::read(component("filesystem")).expect("wasm");
    bytes.extend_from_slice(&[0, 6, 4, b't', b'e', b's', b't', 2]);
    fs::write(&other, &bytes).expect("write");
    assemble(&agent, &[("filesystem", &other)]);

    let mut c = attache_isolated(&out);
    c.arg("--agent-dir")
        .arg(&agent)
        .args(["container", "build", "--json", "--out"])
        .arg(&out);
    let o = attache_tests::output(&mut c);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "the build succeeds: {stderr}");
    let v: Value = serde_json::from_slice(&o.stdout).expect("container build --json");
    let version = v["version"].as_str().expect("version");
    let image = format!("attache-agent-{version}.iso");
    // The good hypervisor got the new container.
    assert_eq!(v["pushed"][0]["hypervisor"], "good", "{v}");
    assert!(good_ds.join(&image).is_file(), "{v}");
    // The stale one is named, with why, in the report and as a warning.
    let u = v["unreachable"].as_array().expect("unreachable");
    assert_eq!(u.len(), 1, "{v}");
    assert_eq!(u[0]["hypervisor"], "stale");
    let why = u[0]["error"].as_str().expect("error");
    assert!(why.contains(stale_vms.to_str().expect("utf-8")), "{why}");
    assert!(
        stderr.contains("warning: hypervisor stale did not get container"),
        "{stderr}"
    );
    assert!(!stale_ds.join(&image).exists());

    // Back again: the next build places it there too, and says nothing.
    fs::create_dir_all(&stale_vms).expect("mkdir");
    let mut c = attache_isolated(&out);
    c.arg("--agent-dir")
        .arg(&agent)
        .args(["container", "build", "--json", "--out"])
        .arg(&out);
    let v: Value = serde_json::from_str(&ok(&mut c)).expect("JSON");
    assert_eq!(v["built"], false, "the same container");
    assert_eq!(v["unreachable"], serde_json::json!([]), "{v}");
    assert!(stale_ds.join(&image).is_file(), "retried: {v}");

    // Every registered hypervisor unreachable: the images are built, but
    // the build fails, naming them.
    fs::remove_dir_all(&stale_vms).expect("rm");
    fs::remove_dir_all(t.path().join("good-vms")).expect("rm");
    let mut c = attache_isolated(&out);
    c.arg("--agent-dir")
        .arg(&agent)
        .args(["container", "build", "--out"])
        .arg(&out);
    let e = fails(&mut c);
    assert!(
        e.contains("no registered hypervisor could take container"),
        "{e}"
    );
    assert!(e.contains("good: ") && e.contains("stale: "), "{e}");
}
