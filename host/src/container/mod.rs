//! The storage container: the agent directory (guest-runner, plugins,
//! manifest) as an ISO 9660 image with Rock Ridge, so that modes and long
//! names survive, and as the disk formats other hypervisors attach (qcow2,
//! raw, VMDK, VHDX), each with the same agent inside. A container is named
//! by the manifest's content version: a new runner or plugin gives a new
//! container, and an unchanged agent is not rebuilt. Nothing is built from
//! an agent directory whose signatures the trust does not accept.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use guest_runner::manifest::Manifest;
use guest_runner::trust::{stamp, Scope, Trust};
use serde::Serialize;

/// Disk formats built from the ISO with `qemu-img convert`.
pub(crate) const DISK_FORMATS: [(&str, &str); 4] = [
    ("qcow2", "qcow2"),
    ("raw", "img"),
    ("vmdk", "vmdk"),
    ("vhdx", "vhdx"),
];

/// A built container.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Built {
    /// The manifest's content version.
    pub version: String,
    /// Whether it was built now (false: it was up to date).
    pub built: bool,
    /// The ISO, which QEMU attaches as a CD.
    pub iso: PathBuf,
    /// Format name → image path.
    pub disks: Vec<(String, PathBuf)>,
}

/// The ISO's volume id: how the guest finds the container among its CDs.
pub(crate) fn volume_label(version: &str) -> String {
    format!("ATTACHE_{}", &version[..8.min(version.len())])
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Checks the agent container at `agent` before anything of it runs here
/// or is placed anywhere: its signatures vouch, under `trust`, for the
/// runner and every plugin, and the runner's bytes match the manifest
/// (hashed again only when a stamp in `stamps`, the containers' cache
/// directory, does not record the same file unchanged since it matched).
/// The manifest, parsed from the bytes that were verified.
pub(crate) fn verify(agent: &Path, trust: &Trust, stamps: &Path) -> anyhow::Result<Manifest> {
    let verified = trust
        .verify(agent, Scope::All)
        .with_context(|| format!("the agent container at {}", agent.display()))?;
    let manifest = verified.manifest;
    let runner = agent.join(guest_runner::manifest::RUNNER_FILE);
    let id = blake3::hash(agent.as_os_str().as_encoded_bytes()).to_hex();
    let stamp = stamps.join(format!(".verified-runner-{}", &id[..16]));
    let _ = std::fs::create_dir_all(stamps);
    let matches = stamp::matches(&stamp, &runner, &manifest.runner.blake3)
        .with_context(|| format!("cannot read {}", runner.display()))?;
    if !matches {
        // The typed error, with both hashes.
        manifest.read_verified_runner(agent)?;
        bail!("{} does not match the manifest", runner.display());
    }
    if verified.unsigned_allowed.is_none() {
        tracing::debug!(
            container = manifest.version.as_str(),
            signers = verified.signers.join("; "),
            "container signatures verified"
        );
    }
    Ok(manifest)
}

/// Builds the container of `agent` under `out/VERSION/` unless it is
/// there, once `trust` vouches for it (see [`verify`]).
pub(crate) fn build(agent: &Path, out: &Path, trust: &Trust) -> anyhow::Result<Built> {
    let manifest = verify(agent, trust, out)?;
    // Build only from what the manifest vouches for.
    for p in &manifest.plugins {
        manifest.read_verified(agent, &p.name)?;
        if let Some(c) = &p.precompiled {
            manifest.read_verified_precompiled(agent, &p.name, &c.engine)?;
        }
    }
    let dir = out.join(&manifest.version);
    let iso = dir.join("attache-agent.iso");
    let disks: Vec<(String, PathBuf)> = DISK_FORMATS
        .iter()
        .map(|(f, ext)| (f.to_string(), dir.join(format!("attache-agent.{ext}"))))
        .collect();
    let complete = dir.join("complete");
    if complete.exists() {
        return Ok(Built {
            version: manifest.version,
            built: false,
            iso,
            disks,
        });
    }
    let tmp = out.join(format!(
        ".building-{}-{}",
        manifest.version,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| {
        let tiso = tmp.join("attache-agent.iso");
        let label = volume_label(&manifest.version);
        run(
            Command::new("xorriso")
                .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", &label, "-o"])
                .arg(&tiso)
                .arg(agent),
            "xorriso",
        )?;
        for (format, path) in &disks {
            let target = tmp.join(path.file_name().context("image name")?);
            run(
                Command::new("qemu-img")
                    .args(["convert", "-q", "-f", "raw", "-O", format])
                    .arg(&tiso)
                    .arg(&target),
                "qemu-img convert",
            )?;
        }
        std::fs::write(tmp.join("complete"), &manifest.version)?;
        crate::store::fsutil::sync_dir(&tmp)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("cannot move the container to {}", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    Ok(Built {
        version: manifest.version,
        built: true,
        iso,
        disks,
    })
}
