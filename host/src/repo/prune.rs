//! Removing what no snapshot references, under an exclusive lock.
//!
//! Order, so that a crash at any point loses nothing referenced: write new
//! packs with the still-used blobs of partly-used packs; write one index
//! naming every pack that stays; only then delete the old index files, and
//! last the packs nothing names any more (also those a killed backup left).

use std::collections::HashSet;

use serde::Serialize;

use super::Repository;
use crate::store::blob;
use crate::store::crypto::BlobId;
use crate::store::index::{index_key, write_indexes, IndexedPack};
use crate::store::pack::{self, PackId, PackWriter, PACK_SIZE};

#[derive(Debug, Default, Serialize)]
pub(crate) struct PruneReport {
    pub packs_removed: usize,
    pub packs_rewritten: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

pub(crate) fn prune(repo: &Repository) -> anyhow::Result<PruneReport> {
    let store = &repo.store;
    let root = store.backend();
    // Pruning decides what is unused from every snapshot and every index
    // file: with one of them unreadable it would delete data still needed.
    let listing = store.snapshot_listing()?;
    if let Some(d) = listing.damaged.first() {
        anyhow::bail!(
            "{}: snapshot {} is damaged ({}); run `attache repair snapshots` before pruning",
            d.path.display(),
            d.id,
            d.why
        );
    }
    if let Some((p, why)) = store.index().damaged_files.first() {
        anyhow::bail!(
            "{}: {why}; run `attache repair index` before pruning",
            p.display()
        );
    }
    let mut used: HashSet<BlobId> = HashSet::new();
    for s in listing.good {
        used.extend(s.tree.iter().copied());
        let items = store.items(&s).map_err(|e| {
            anyhow::anyhow!(
                "snapshot {}: its item list cannot be read ({e}); run `attache repair snapshots` before pruning",
                s.short_id()
            )
        })?;
        for it in items {
            used.extend(it.content.iter().copied());
        }
    }
    let index = store.index();
    let by_pack = index.blobs_by_pack();
    for id in &used {
        anyhow::ensure!(
            index.contains(id),
            "blob {id} is referenced but not indexed; run `attache verify` before pruning"
        );
    }
    let old_index_files: Vec<BlobId> = index.files.keys().copied().collect();
    drop(index);

    let mut report = PruneReport::default();
    let mut keep: Vec<IndexedPack> = Vec::new();
    let mut doomed: Vec<PackId> = Vec::new();
    let mut w = PackWriter::default();
    let mut moved: HashSet<BlobId> = HashSet::new();
    for (p, mut blobs) in by_pack {
        blobs.sort_by_key(|b| b.offset);
        let live = blobs.iter().filter(|b| used.contains(&b.id)).count();
        if live == blobs.len() {
            keep.push(IndexedPack { pack: p, blobs });
            continue;
        }
        doomed.push(p);
        report.blobs_removed += blobs.len() - live;
        if live == 0 {
            report.packs_removed += 1;
            continue;
        }
        report.packs_rewritten += 1;
        let bytes = root.read(&pack::pack_key(&p))?;
        for b in blobs.iter().filter(|b| used.contains(&b.id)) {
            if !moved.insert(b.id) {
                continue;
            }
            let sealed = &bytes[b.offset as usize..(b.offset + u64::from(b.len)) as usize];
            // Copy only what still opens: pruning must not spread damage.
            blob::decode(store.cipher(), &b.id, b.raw_len, sealed)?;
            w.add(
                b.kind,
                blob::Encoded {
                    id: b.id,
                    raw_len: b.raw_len,
                    bytes: sealed.to_vec(),
                },
            );
            if w.len() >= PACK_SIZE {
                let (id, blobs) = w.finish_and_reuse(root, store.cipher())?;
                keep.push(IndexedPack { pack: id, blobs });
            }
        }
    }
    if !w.is_empty() {
        let (id, blobs) = w.finish(root, store.cipher())?;
        keep.push(IndexedPack { pack: id, blobs });
    }
    let kept: HashSet<PackId> = keep.iter().map(|p| p.pack).collect();
    let new_index = write_indexes(root, store.cipher(), keep)?;
    for f in old_index_files.iter().filter(|f| !new_index.contains(f)) {
        root.delete(&index_key(f))?;
    }
    // Packs nothing names any more, including those of killed backups.
    for e in root.list("data")? {
        let Some(p) = pack::parse_id(crate::store::backend::base(&e.key)) else {
            continue;
        };
        if kept.contains(&p) {
            continue;
        }
        if !doomed.contains(&p) {
            report.packs_removed += 1;
        }
        report.bytes_freed += e.size;
        root.delete(&e.key)?;
    }
    Ok(report)
}
