//! `attache repair index` and `attache repair snapshots`, after restic's
//! commands of the same names, under an exclusive lock.
//!
//! - `repair index` rebuilds the index from the packs themselves: every pack
//!   file is read whole, its header parsed and every blob opened and checked
//!   (restic's `--read-all-packs`); damaged blobs, and packs whose header
//!   does not read, are left out. The new index is written before the old
//!   index files are removed, so a crash leaves both (a blob listed twice is
//!   harmless). The damage record is removed: the new index holds no copy it
//!   names. Run it after `verify` reports damaged index files or packs; the
//!   next backup stores again what was lost, if its source still has it.
//! - `repair snapshots` rewrites each snapshot whose data is partly gone,
//!   keeping the items whose every chunk is still indexed and intact, and
//!   noting the dropped ones as warnings of the new snapshot; it removes
//!   snapshots whose file or item list is gone. With `dry_run` it only says
//!   what it would do.

use std::collections::HashSet;

use serde::Serialize;

use super::Repository;
use crate::store::crypto::BlobId;
use crate::store::index::{index_key, write_indexes, IndexedPack};
use crate::store::snapshot::{write_tree, Warning};
use crate::store::{backend, blob, damage, pack};

/// What `repair index` did.
#[derive(Debug, Default, Serialize)]
pub(crate) struct IndexRepair {
    pub packs_read: usize,
    pub blobs_indexed: usize,
    /// Files (packs, old index files) and what was wrong with them.
    pub problems: Vec<String>,
}

/// Rebuilds the index from the packs.
pub(crate) fn repair_index(repo: &Repository) -> anyhow::Result<IndexRepair> {
    let store = &repo.store;
    let root = store.backend();
    let mut report = IndexRepair::default();
    let mut packs = Vec::new();
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut ids = pack::list_packs(root)?;
    ids.sort();
    for p in ids {
        let key = pack::pack_key(&p);
        let path = root.name(&key);
        report.packs_read += 1;
        let bytes = match root.read(&key) {
            Ok(b) => b,
            Err(e) => {
                report.problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let header = match pack::read_header(store.cipher(), &bytes) {
            Ok(h) => h,
            Err(e) => {
                report.problems.push(format!(
                    "{}: {e}; its blobs are left out of the index",
                    path.display()
                ));
                continue;
            }
        };
        let mut blobs = Vec::new();
        for b in header {
            let end = (b.offset + u64::from(b.len)) as usize;
            let sealed = &bytes[b.offset as usize..end];
            match blob::decode(store.cipher(), &b.id, b.raw_len, sealed) {
                Ok(_) if seen.insert(b.id) => blobs.push(b),
                Ok(_) => {}
                Err(e) => report
                    .problems
                    .push(format!("{}: {e}; left out of the index", path.display())),
            }
        }
        report.blobs_indexed += blobs.len();
        if !blobs.is_empty() {
            packs.push(IndexedPack { pack: p, blobs });
        }
    }
    let old: Vec<BlobId> = root
        .list("index")?
        .iter()
        .filter_map(|e| pack::parse_id(backend::base(&e.key)))
        .collect();
    let new = write_indexes(root, store.cipher(), packs)?;
    for f in old.iter().filter(|f| !new.contains(f)) {
        root.delete(&index_key(f))?;
    }
    damage::clear(root)?;
    store.reload_index()?;
    Ok(report)
}

/// What `repair snapshots` did (or would do).
#[derive(Debug, Default, Serialize)]
pub(crate) struct SnapshotRepair {
    /// Snapshots removed: id and why.
    pub removed: Vec<(String, String)>,
    /// Snapshots rewritten: old id, new id, items dropped.
    pub rewritten: Vec<(String, String, Vec<String>)>,
}

/// Removes or rewrites snapshots whose data is gone.
pub(crate) fn repair_snapshots(repo: &Repository, dry_run: bool) -> anyhow::Result<SnapshotRepair> {
    let store = &repo.store;
    // The repository's own snapshot files, not the local copy.
    store.read_objects_directly()?;
    let mut report = SnapshotRepair::default();
    // Missing and truncated packs count as lost without reading them.
    store.check_packs();
    let listing = store.snapshot_listing()?;
    for d in &listing.damaged {
        report.removed.push((d.id.clone(), d.why.clone()));
        if !dry_run {
            store.remove_snapshot(&d.id)?;
        }
    }
    for s in &listing.good {
        let items = match store.items(s) {
            Ok(items) => items,
            Err(e) => {
                report
                    .removed
                    .push((s.id.clone(), format!("its item list cannot be read: {e}")));
                if !dry_run {
                    store.remove_snapshot(&s.id)?;
                }
                continue;
            }
        };
        let (keep, lost): (Vec<_>, Vec<_>) = items
            .into_iter()
            .partition(|it| it.content.iter().all(|c| store.has(c)));
        if lost.is_empty() {
            continue;
        }
        let dropped: Vec<String> = lost.iter().map(|i| i.record.id.clone()).collect();
        let mut new_id = String::new();
        if !dry_run {
            let mut info = s.clone();
            let mut set = store.writer();
            info.tree = write_tree(&mut set, store.chunker(), &keep)?;
            set.commit()?;
            info.items = keep.len() as u64;
            info.bytes = keep.iter().map(|i| i.record.size).sum();
            info.warnings.extend(lost.iter().map(|i| Warning {
                id: i.record.id.clone(),
                message: "removed by `attache repair snapshots`: its data is lost".into(),
            }));
            new_id = store.write_snapshot(&info)?;
            info.id = new_id.clone();
            repo.catalog.add(&info, &keep)?;
            store.remove_snapshot(&s.id)?;
        }
        report.rewritten.push((s.id.clone(), new_id, dropped));
    }
    if !dry_run {
        repo.catalog.sync(store)?;
    }
    Ok(report)
}
