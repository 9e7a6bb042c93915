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

/// The date every file, directory and volume of the ISO carries
/// (1970-01-01 00:00:01 UTC), so that the image depends on the agent's
/// bytes only.
const ISO_DATE_EPOCH: &str = "1";
/// [`ISO_DATE_EPOCH`] as `--set_all_file_dates` reads it (YYYYMMDDhhmmsscc).
const ISO_FILE_DATE: &str = "1970010100000100";

/// Writes the ISO of the directory `agent` to `out`, with volume id
/// `label`. The image is reproducible: the same agent gives the same bytes
/// on any machine, whatever the files' dates, owners and the umask they
/// were copied under (`-r`: owner root, modes rationalized; fixed dates
/// and volume UUID through SOURCE_DATE_EPOCH). Workers that share a
/// datastore each build the container from the same signed agent and so
/// each finds the one another placed byte for byte its own
/// (`hypervisor::datastore`).
pub(crate) fn make_iso(agent: &Path, label: &str, out: &Path) -> anyhow::Result<()> {
    run(
        Command::new("xorriso")
            .env("SOURCE_DATE_EPOCH", ISO_DATE_EPOCH)
            .args(["-as", "mkisofs", "-quiet", "-r", "-J"])
            .args(["--set_all_file_dates", ISO_FILE_DATE])
            .args(["-V", label, "-o"])
            .arg(out)
            .arg(agent),
        "xorriso",
    )
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
        make_iso(agent, &volume_label(&manifest.version), &tiso)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Writes an agent-like tree under `dir` with the given file mode.
    fn tree(dir: &Path, mode: u32) {
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        for (name, body) in [
            ("guest-runner", &b"runner bytes"[..]),
            ("manifest.json", b"{}"),
            ("plugins/a.wasm", b"\0asm plugin"),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            let m = if name == "guest-runner" {
                mode | 0o111
            } else {
                mode
            };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
    }

    #[test]
    fn the_iso_depends_on_the_agents_bytes_only() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        tree(&a, 0o644);
        // Another machine: other dates, another umask, another owner.
        tree(&b, 0o664);
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for f in ["guest-runner", "manifest.json", "plugins/a.wasm"] {
            let file = std::fs::File::options()
                .write(true)
                .open(b.join(f))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        let _ = std::os::unix::fs::chown(b.join("manifest.json"), Some(65534), Some(65534));
        let iso = |dir: &Path, name: &str| {
            let out = t.path().join(name);
            make_iso(dir, "ATTACHE_test", &out).unwrap();
            std::fs::read(out).unwrap()
        };
        let first = iso(&a, "a.iso");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(
            iso(&a, "a2.iso") == first,
            "built again later: the same bytes"
        );
        assert!(
            iso(&b, "b.iso") == first,
            "another copy of the agent: the same bytes"
        );
        // And the bytes do depend on the agent.
        std::fs::write(b.join("plugins/a.wasm"), b"\0asm plugin 2").unwrap();
        assert!(iso(&b, "b2.iso") != first);
    }
}
