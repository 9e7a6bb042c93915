//! `attache container assemble`: the agent container's contents.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use guest_runner::manifest::{plugin_file, Manifest, RUNNER_FILE};

use crate::cli::{AssembleArgs, BuildArgs, Cli};

pub fn assemble(a: &AssembleArgs) -> anyhow::Result<()> {
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
        if p.extension().is_some_and(|x| x == "wasm") && !names.contains(&stem) {
            fs::remove_file(&p)?;
        }
    }
    let manifest = Manifest::for_dir(&a.out, &names)?;
    manifest.write(&a.out)?;
    println!("{}", manifest.version);
    Ok(())
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

/// `attache container build`
pub fn build(cli: &Cli, a: &BuildArgs) -> anyhow::Result<()> {
    let agent = crate::agent::find(cli.agent_dir.as_deref())?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| super::cache(cli).join("containers"));
    let built = crate::container::build(&agent, &out)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&built)?);
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
    }
    Ok(())
}
