//! `attache container assemble`, `build` and `sign`: the agent container's
//! contents, its images, and its publishers' signatures.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use guest_runner::manifest::{plugin_file, Manifest, RUNNER_FILE};

use guest_runner::trust::key::PrivateKey;

use crate::cli::{AssembleArgs, BuildArgs, Cli, SignArgs};

/// `attache container assemble`: lays the container out and prints its
/// version.
pub(crate) fn assemble_command(a: &AssembleArgs) -> anyhow::Result<()> {
    println!("{}", assemble(a)?);
    Ok(())
}

/// Lays out the container (signed with `--sign`); its version.
pub(crate) fn assemble(a: &AssembleArgs) -> anyhow::Result<String> {
    // Read the key before anything changes: a bad key leaves the old
    // container as it was.
    let key = a.sign.as_deref().map(read_key).transpose()?;
    let version = lay_out(a)?;
    // The old signatures no longer match the new manifest.
    let sig = a.out.join(guest_runner::trust::sigfile::SIGNATURE_FILE);
    if sig.exists() {
        fs::remove_file(&sig).with_context(|| format!("cannot remove {}", sig.display()))?;
    }
    if let Some(key) = key {
        sign_dir(&a.out, &key)?;
    }
    Ok(version)
}

/// Lays out the container; its version.
fn lay_out(a: &AssembleArgs) -> anyhow::Result<String> {
    let plugins_dir = a.out.join("plugins");
    fs::create_dir_all(&plugins_dir)
        .with_context(|| format!("cannot create {}", plugins_dir.display()))?;
    copy(&a.runner, &a.out.join(RUNNER_FILE), 0o755)?;
    let names: Vec<String> = a.plugins.iter().map(|(n, _)| n.clone()).collect();
    for (name, path) in &a.plugins {
        copy(path, &a.out.join(plugin_file(name)), 0o644)?;
    }
    // Components of plugins no longer listed do not stay behind.
    for e in fs::read_dir(&plugins_dir)? {
        let p = e?.path();
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let component = p.extension().is_some_and(|x| x == "wasm" || x == "cwasm");
        if component && !names.contains(&stem) {
            fs::remove_file(&p)?;
        }
    }
    if a.no_precompile {
        for name in &names {
            let p = a.out.join(guest_runner::manifest::precompiled_file(name));
            if p.exists() {
                fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        let manifest = Manifest::for_dir(&a.out, &names, None)?;
        manifest.write(&a.out)?;
        return Ok(manifest.version);
    }
    // Compiled ahead of time by the runner itself, so that its engine (and
    // nothing else) loads them in the guest without compiling.
    let out = std::process::Command::new(a.out.join(RUNNER_FILE))
        .arg("--agent-dir")
        .arg(&a.out)
        .arg("precompile")
        .args(names.iter().flat_map(|n| ["--plugin", n.as_str()]))
        .output()
        .context("cannot run guest-runner precompile")?;
    anyhow::ensure!(
        out.status.success(),
        "guest-runner precompile failed: {}",
        crate::jobs::plugin::runner_error(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).context("engine id")?;
    let mut lines = printed.lines();
    let engine = lines
        .next()
        .context("guest-runner precompile printed no engine id")?;
    let mut manifest = Manifest::for_dir(&a.out, &names, Some(engine.trim()))?;
    // Each plugin's contract version, as the runner found it.
    for line in lines {
        if let Some((name, contract)) = line.split_once(' ') {
            if let Some(p) = manifest.plugins.iter_mut().find(|p| p.name == name) {
                p.contract = Some(contract.to_owned());
            }
        }
    }
    manifest.write(&a.out)?;
    Ok(manifest.version)
}

/// Copies through a temporary file and a rename, so a running runner never
/// sees a half-written file.
fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    let tmp = to.with_extension("tmp");
    fs::copy(from, &tmp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, to).with_context(|| format!("cannot replace {}", to.display()))?;
    Ok(())
}

/// A private key file.
fn read_key(path: &Path) -> anyhow::Result<PrivateKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the key {}", path.display()))?;
    PrivateKey::from_file_text(&text).with_context(|| format!("the key {}", path.display()))
}

/// Signs the container at `dir` with `key` now; logs and prints the key id.
fn sign_dir(dir: &Path, key: &PrivateKey) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sig = guest_runner::trust::sign_container(dir, key, now)
        .with_context(|| format!("cannot sign the container at {}", dir.display()))?;
    tracing::info!(container = %dir.display(), key = sig.key.id(), "container signed");
    eprintln!("signed {} with key {}", dir.display(), sig.key.id());
    Ok(())
}

/// `attache container sign`: signs the agent directory's manifest.
pub(crate) fn sign(cli: &Cli, a: &SignArgs) -> anyhow::Result<()> {
    let agent = crate::agent::find(cli.agent_dir.as_deref())?;
    sign_dir(&agent, &read_key(&a.key)?)
}

/// The container of the current agent directory, built if needed.
pub(crate) fn current(cli: &Cli) -> anyhow::Result<crate::container::Built> {
    let agent = crate::agent::find(cli.agent_dir.as_deref())?;
    crate::container::build(
        &agent,
        &super::cache(cli).join("containers"),
        &super::trust(cli)?,
    )
}

/// `attache container build`: builds the images and pushes them to every
/// registered hypervisor that can take them.
///
/// One hypervisor that cannot take the container (its VM directory or a
/// datastore is gone) does not stop the others: each is reported, with a
/// warning on standard error (`unreachable` in `--json`), and the build
/// succeeds. The next build pushes to it again, and so does the next job on
/// one of its VMs (`datastore::for_vm` places a missing container). The
/// build fails only when hypervisors are registered and none of them took
/// the container: then no VM gets it from this build, which is a broken
/// setup (a datastore mount that is down everywhere) rather than one
/// hypervisor's outage, and a script must see it.
pub(crate) fn build(cli: &Cli, a: &BuildArgs) -> anyhow::Result<()> {
    let agent = crate::agent::find(cli.agent_dir.as_deref())?;
    if let Some(key) = &a.sign {
        sign_dir(&agent, &read_key(key)?)?;
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| super::cache(cli).join("containers"));
    let built = crate::container::build(&agent, &out, &super::trust(cli)?)?;
    let report = push_everywhere(cli, &built)?;
    if a.json {
        let v = serde_json::json!({
            "version": built.version, "built": built.built, "iso": built.iso,
            "disks": built.disks, "pushed": report.pushed, "unreachable": report.unreachable,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "container {} {}",
            built.version,
            if built.built {
                "built"
            } else {
                "is up to date"
            }
        );
        println!("  iso    {}", built.iso.display());
        for (f, p) in &built.disks {
            println!("  {f:<6} {}", p.display());
        }
        for p in &report.pushed {
            super::hypervisor::report(p);
        }
    }
    for u in &report.unreachable {
        eprintln!(
            "warning: hypervisor {} did not get container {}: {} (the next build, or the next job on one of its VMs, places it)",
            u.hypervisor, built.version, u.error
        );
    }
    anyhow::ensure!(
        report.unreachable.is_empty() || !report.pushed.is_empty(),
        "the images are built, but no registered hypervisor could take container {}: {}",
        built.version,
        report
            .unreachable
            .iter()
            .map(|u| format!("{}: {}", u.hypervisor, u.error))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(())
}

/// A hypervisor the container could not be pushed to, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Unreachable {
    pub hypervisor: String,
    pub error: String,
}

/// What a push to every hypervisor did.
#[derive(Debug, Default)]
pub(crate) struct PushReport {
    /// The hypervisors that have the container now, by name.
    pub pushed: Vec<crate::hypervisor::datastore::Pushed>,
    /// The ones that could not take it, by name.
    pub unreachable: Vec<Unreachable>,
}

/// Pushes `built` to every registered hypervisor at once (a few copies at
/// a time), under the registry lock. A hypervisor that cannot take it is
/// reported and does not stop the others.
pub(crate) fn push_everywhere(
    cli: &Cli,
    built: &crate::container::Built,
) -> anyhow::Result<PushReport> {
    use crate::hypervisor::{datastore, journal::Journal, registry::Registry};
    use std::sync::Mutex;

    let state = super::state(cli);
    let registry = Registry::open(&state, cli.state_db.as_deref())?;
    let journal = Journal::open(&state, cli.state_db.as_deref())?;
    let _lock = registry.lock()?;
    let hvs = registry.list()?;
    let next = Mutex::new(hvs.iter());
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(8)
        .min(hvs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(hv) = next.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                    break;
                };
                let r = datastore::push(hv, built, &journal).map_err(|e| Unreachable {
                    hypervisor: hv.name.clone(),
                    error: format!("{e:#}"),
                });
                if let Err(u) = &r {
                    tracing::warn!(hypervisor = %u.hypervisor, "the container could not be pushed: {}", u.error);
                }
                results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            });
        }
    });
    let mut report = PushReport::default();
    for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match r {
            Ok(p) => report.pushed.push(p),
            Err(u) => report.unreachable.push(u),
        }
    }
    report
        .pushed
        .sort_by(|a, b| a.hypervisor.cmp(&b.hypervisor));
    report
        .unreachable
        .sort_by(|a, b| a.hypervisor.cmp(&b.hypervisor));
    Ok(report)
}
