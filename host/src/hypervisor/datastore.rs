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
        return Ok(d.dir.join(&name));
    }
    let d = reaching
        .first()
        .with_context(|| format!("no datastore of hypervisor {} reaches VM {vm}", hv.name))?;
    place(&source(hv, built)?, &d.dir, &name)?;
    Ok(d.dir.join(&name))
}

/// Copies `src` to `dir/name` unless it is there; a reader never sees a
/// partial file (temporary name, fsync, rename). Returns whether it copied.
fn place(src: &Path, dir: &Path, name: &str) -> anyhow::Result<bool> {
    let dst = dir.join(name);
    if dst.is_file() {
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
