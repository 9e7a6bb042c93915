//! Checking a repository: its structure always, every byte of every pack
//! with `read_data`. Every damaged file is named (relative to nothing: the
//! full path), a damaged or missing chunk is traced to the snapshots and
//! items that need it, and what reading found is recorded in the
//! repository's damage record, so that later backups store those chunks
//! again instead of pointing at the damaged copies.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::Repository;
use crate::store::crypto::BlobId;
use crate::store::damage::{self, Damaged};
use crate::store::pack;
use crate::store::{blob, StoreError};

/// What verification found.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub snapshots: usize,
    pub packs: usize,
    pub blobs_checked: usize,
    /// Problems that are not about one blob (a missing or truncated pack, a
    /// damaged snapshot or index file), each naming the file.
    pub errors: Vec<String>,
    /// Blobs that are missing or damaged, with the reason.
    pub bad_blobs: BTreeMap<String, String>,
    /// Snapshot id → item ids that cannot be restored whole (`*`: the item
    /// list itself, or the snapshot file, is damaged).
    pub affected: BTreeMap<String, BTreeSet<String>>,
}

impl Report {
    pub(crate) fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.bad_blobs.is_empty()
    }
}

pub(crate) fn verify(repo: &Repository, read_data: bool) -> anyhow::Result<Report> {
    let store = &repo.store;
    // The repository's own index files and snapshots, not the local copy.
    store.read_objects_directly()?;
    let mut r = Report::default();
    let mut bad: HashMap<BlobId, String> = HashMap::new();

    for (path, why) in &store.index().damaged_files {
        r.errors.push(format!(
            "{}: {why} (run `attache repair index`)",
            path.display()
        ));
    }
    // Packs named by the index are all there, and big enough.
    r.errors.extend(store.check_packs());
    let index = store.index();
    let by_pack = index.blobs_by_pack();
    r.packs = by_pack.len();
    for id in index.ids() {
        if let Some(why) = index.why_bad(id) {
            bad.insert(*id, why.to_owned());
        }
    }
    drop(index);

    // Every byte of every pack, each blob opened and checked against its id.
    let mut found = Vec::new();
    if read_data {
        for (p, blobs) in &by_pack {
            let key = pack::pack_key(p);
            let path = store.backend().name(&key);
            let bytes = match store.backend().read(&key) {
                Ok(b) => b,
                // Missing packs were named by `check_packs` above.
                Err(e) if e.kind() == crate::store::ErrorKind::NotFound => continue,
                Err(e) => {
                    r.errors
                        .push(format!("{}: cannot be read: {e}", path.display()));
                    continue;
                }
            };
            if *blake3::hash(&bytes).as_bytes() != p.0 {
                r.errors.push(format!(
                    "{}: its content does not match its name (damaged or replaced)",
                    path.display()
                ));
            }
            for b in blobs {
                r.blobs_checked += 1;
                let end = b.offset.saturating_add(u64::from(b.len));
                let why = match bytes.get(b.offset as usize..end.min(usize::MAX as u64) as usize) {
                    None => format!(
                        "in {}: past the end of the pack ({} bytes)",
                        path.display(),
                        bytes.len()
                    ),
                    Some(sealed) => match blob::decode(store.cipher(), &b.id, b.raw_len, sealed) {
                        Ok(_) => continue,
                        Err(StoreError::Damaged { why, .. }) => {
                            format!("in {}: {why}", path.display())
                        }
                        Err(e) => format!("in {}: {e}", path.display()),
                    },
                };
                bad.insert(b.id, why.clone());
                found.push(Damaged {
                    pack: *p,
                    blob: b.id,
                    why,
                });
            }
        }
        if !found.is_empty() {
            damage::record(store.backend(), store.cipher(), &found)?;
            for d in found {
                store.mark_bad(d.pack, d.blob, d.why);
            }
        }
    }

    // Snapshots: readable, their item lists present, their content indexed.
    let listing = store.snapshot_listing()?;
    for d in &listing.damaged {
        r.errors.push(format!(
            "{}: snapshot {} is damaged: {}",
            d.path.display(),
            &d.id[..8.min(d.id.len())],
            d.why
        ));
        r.affected
            .entry(d.id.clone())
            .or_default()
            .insert("*".into());
    }
    let snaps = listing.good;
    r.snapshots = snaps.len() + listing.damaged.len();
    // The index itself, not a copy of its ids: verify's memory does not
    // grow twice with the repository's blobs.
    let known = store.index();
    for s in &snaps {
        for t in &s.tree {
            if !known.contains(t) {
                bad.entry(*t)
                    .or_insert_with(|| "missing from the index".into());
            }
        }
        if s.tree.iter().any(|t| bad.contains_key(t)) || !repo.catalog.has(&s.id)? {
            r.errors.push(format!(
                "snapshot {}: its item list is damaged; no item can be listed",
                s.short_id()
            ));
            r.affected
                .entry(s.id.clone())
                .or_default()
                .insert("*".into());
            continue;
        }
        // A chunk of the item list at a time, not the whole list.
        repo.catalog.each_chunk(&s.id, None, &mut |items| {
            for it in &items {
                for c in &it.content {
                    if !known.contains(c) {
                        bad.entry(*c)
                            .or_insert_with(|| "missing from the index".into());
                    }
                    if bad.contains_key(c) {
                        r.affected
                            .entry(s.id.clone())
                            .or_default()
                            .insert(it.record.id.clone());
                    }
                }
            }
            Ok(())
        })?;
    }
    drop(known);
    r.bad_blobs = bad.into_iter().map(|(k, v)| (k.to_hex(), v)).collect();
    Ok(r)
}
