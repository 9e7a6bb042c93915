//! Putting the container where hypervisors can attach it.
//!
//! A hypervisor gets the current container on the fewest of its datastores
//! that together reach all its VMs (a greedy set cover: each step takes the
//! datastore reaching the most VMs not yet reached). A datastore holds
//! `attache-agent-VERSION.iso`; older versions are removed once no job in
//! the journal uses them. Everything here runs under the registry lock.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use super::journal::Journal;
use super::registry::{Datastore, Hypervisor};
use crate::container::Built;
use guest_runner::trust::stamp;

const PREFIX: &str = "attache-agent-";

/// The container's file name on a datastore.
pub(crate) fn file_name(version: &str, format: &str) -> String {
    format!("{PREFIX}{version}.{format}")
}

/// The indices of the fewest datastores (greedy) that reach every VM in
/// `vms`; with no VM, the first datastore, ready for the first one.
pub(crate) fn cover(datastores: &[Datastore], vms: &[String]) -> anyhow::Result<Vec<usize>> {
    if datastores.is_empty() {
        bail!("no datastore");
    }
    let mut left: BTreeSet<&str> = vms.iter().map(String::as_str).collect();
    if left.is_empty() {
        return Ok(vec![0]);
    }
    let mut chosen = Vec::new();
    while !left.is_empty() {
        let (best, n) = datastores
            .iter()
            .enumerate()
            .filter(|(i, _)| !chosen.contains(i))
            .map(|(i, d)| (i, left.iter().filter(|v| d.reaches(v)).count()))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .unwrap_or((0, 0));
        if n == 0 {
            bail!(
                "no datastore reaches VM(s) {}",
                left.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        chosen.push(best);
        left.retain(|v| !datastores[best].reaches(v));
    }
    Ok(chosen)
}

/// What a push did on one hypervisor.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Pushed {
    pub hypervisor: String,
    /// Datastores that now hold the container (copied now or already there).
    pub datastores: Vec<PathBuf>,
    /// How many of them it was copied to now.
    pub copied: usize,
    /// Older containers removed.
    pub removed: Vec<PathBuf>,
}

/// The container file of `built` in the format `hv` attaches.
fn source(hv: &Hypervisor, built: &Built) -> anyhow::Result<PathBuf> {
    let format = hv.driver.format();
    if format == "iso" {
        return Ok(built.iso.clone());
    }
    built
        .disks
        .iter()
        .find(|(f, _)| f == format)
        .map(|(_, p)| p.clone())
        .with_context(|| format!("the container has no {format} image"))
}

/// Puts the container on the datastores that cover `hv`'s VMs and removes
/// older containers no job uses. The caller holds the registry lock.
pub(crate) fn push(hv: &Hypervisor, built: &Built, journal: &Journal) -> anyhow::Result<Pushed> {
    let vms: Vec<String> = hv.vms()?.into_iter().map(|v| v.name).collect();
    let chosen = cover(&hv.datastores, &vms).with_context(|| format!("hypervisor {}", hv.name))?;
    let src = source(hv, built)?;
    let name = file_name(&built.version, hv.driver.format());
    let mut out = Pushed {
        hypervisor: hv.name.clone(),
        datastores: Vec::new(),
        copied: 0,
        removed: Vec::new(),
    };
    for i in chosen {
        let dir = &hv.datastores[i].dir;
        if place(&src, dir, &name)? {
            out.copied += 1;
        }
        out.datastores.push(dir.clone());
    }
    out.removed = remove_old(hv, &name, journal)?;
    Ok(out)
}

/// The container for VM `vm` on a datastore that reaches it, placed there
/// now if none has it. The caller holds the registry lock.
pub(crate) fn for_vm(hv: &Hypervisor, vm: &str, built: &Built) -> anyhow::Result<PathBuf> {
    let name = file_name(&built.version, hv.driver.format());
    let reaching: Vec<&Datastore> = hv.datastores.iter().filter(|d| d.reaches(vm)).collect();
    if let Some(d) = reaching.iter().find(|d| d.dir.join(&name).is_file()) {
        check_placed(&source(hv, built)?, &d.dir.join(&name))?;
        return Ok(d.dir.join(&name));
    }
    let d = reaching
        .first()
        .with_context(|| format!("no datastore of hypervisor {} reaches VM {vm}", hv.name))?;
    place(&source(hv, built)?, &d.dir, &name)?;
    Ok(d.dir.join(&name))
}

/// Checks that the container at `placed` on a datastore is byte for byte
/// `src`, the image built from the verified agent: whoever can write a
/// datastore must not get another runner attached. Hashes come from
/// stamps beside `src` while neither file changes (see
/// `guest_runner::trust::stamp`).
fn check_placed(src: &Path, placed: &Path) -> anyhow::Result<()> {
    let stamps = src
        .parent()
        .context("the container image has no directory")?;
    let stamp = |p: &Path| {
        let id = blake3::hash(p.as_os_str().as_encoded_bytes()).to_hex();
        stamps.join(format!(".hash-{}", &id[..16]))
    };
    let want =
        stamp::hash(&stamp(src), src).with_context(|| format!("cannot read {}", src.display()))?;
    let found = stamp::hash(&stamp(placed), placed)
        .with_context(|| format!("cannot read {}", placed.display()))?;
    anyhow::ensure!(
        want == found,
        "the container {} on the datastore is not the one built from the verified agent ({}): it was changed there; refusing to attach it (remove it, and the next push or job places the verified one)",
        placed.display(),
        src.display()
    );
    Ok(())
}

/// Copies `src` to `dir/name` unless it is there (and checked to be
/// `src`); a reader never sees a partial file (temporary name, fsync,
/// rename). Returns whether it copied.
fn place(src: &Path, dir: &Path, name: &str) -> anyhow::Result<bool> {
    let dst = dir.join(name);
    if dst.is_file() {
        check_placed(src, &dst)?;
        return Ok(false);
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create datastore {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let copied = (|| {
        let mut from = fs::File::open(src)?;
        let mut to = fs::File::create(&tmp)?;
        std::io::copy(&mut from, &mut to)?;
        to.flush()?;
        to.sync_all()?;
        fs::rename(&tmp, &dst)?;
        crate::store::fsutil::sync_dir(dir).map_err(std::io::Error::other)
    })();
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot copy the container to {}", dst.display()));
    }
    Ok(true)
}

/// Removes containers other than `current` from `hv`'s datastores, unless a
/// job in the journal has one attached.
fn remove_old(hv: &Hypervisor, current: &str, journal: &Journal) -> anyhow::Result<Vec<PathBuf>> {
    let in_use = journal.containers_in_use()?;
    let mut removed = Vec::new();
    for d in &hv.datastores {
        for p in containers(&d.dir) {
            let is_current = p.file_name().is_some_and(|n| n == current);
            if !is_current && !in_use.contains(&p) {
                fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
                removed.push(p);
            }
        }
    }
    Ok(removed)
}

/// The containers on datastore `dir`, sorted (none if it cannot be read).
pub(crate) fn containers(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(dir: &str, vms: Option<&[&str]>) -> Datastore {
        Datastore {
            dir: dir.into(),
            vms: vms.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn a_container_changed_on_its_datastore_is_not_attached() {
        let t = tempfile::tempdir().unwrap();
        let built_dir = t.path().join("cache/v1");
        fs::create_dir_all(&built_dir).unwrap();
        let iso = built_dir.join("attache-agent.iso");
        fs::write(&iso, b"verified image").unwrap();
        let built = Built {
            version: "v1".into(),
            built: true,
            iso: iso.clone(),
            disks: Vec::new(),
        };
        let hv = Hypervisor {
            name: "hv".into(),
            driver: crate::hypervisor::registry::Driver::Qemu,
            vm_dir: Some(t.path().join("vms")),
            uri: None,
            datastores: vec![ds(t.path().join("ds").to_str().unwrap(), None)],
        };
        let placed = for_vm(&hv, "vm1", &built).unwrap();
        assert_eq!(fs::read(&placed).unwrap(), b"verified image");
        assert_eq!(for_vm(&hv, "vm1", &built).unwrap(), placed, "checked, kept");
        // Someone who can write the datastore swaps it.
        fs::write(&placed, b"another image!").unwrap();
        let e = for_vm(&hv, "vm1", &built).unwrap_err().to_string();
        assert!(e.contains("refusing to attach it"), "{e}");
        assert!(place(&iso, placed.parent().unwrap(), &file_name("v1", "iso")).is_err());
        // Removed, the verified one is placed again.
        fs::remove_file(&placed).unwrap();
        assert_eq!(for_vm(&hv, "vm1", &built).unwrap(), placed);
        assert_eq!(fs::read(&placed).unwrap(), b"verified image");
    }

    #[test]
    fn covers_with_the_fewest_datastores() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // One datastore reaching all beats two partial ones.
        let d = [ds("a", Some(&["1"])), ds("b", None), ds("c", Some(&["2"]))];
        assert_eq!(cover(&d, &v(&["1", "2", "3"])).unwrap(), vec![1]);
        // Partial reach: two are needed, and the larger goes first.
        let d = [
            ds("a", Some(&["1"])),
            ds("b", Some(&["2", "3"])),
            ds("c", Some(&["1", "4"])),
        ];
        assert_eq!(cover(&d, &v(&["1", "2", "3", "4"])).unwrap(), vec![1, 2]);
        // A VM nobody reaches is an error naming it.
        let e = cover(&d, &v(&["9"])).unwrap_err().to_string();
        assert!(e.contains('9'), "{e}");
        assert_eq!(cover(&d, &[]).unwrap(), vec![0]);
        assert!(cover(&[], &v(&["1"])).is_err());
    }
}
