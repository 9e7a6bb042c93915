//! Checking a repository: its structure always, every byte of every pack
//! with `read_data`. A damaged or missing chunk is traced to the snapshots
//! and items that need it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::Repository;
use crate::store::crypto::BlobId;
use crate::store::pack::{self, PackId};
use crate::store::{blob, StoreError};

/// What verification found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub snapshots: usize,
    pub packs: usize,
    pub blobs_checked: usize,
    /// Problems that are not about one blob (a missing pack, a damaged
    /// snapshot file, a pack whose bytes do not match its name).
    pub errors: Vec<String>,
    /// Blobs that are missing or damaged, with the reason.
    pub bad_blobs: BTreeMap<String, String>,
    /// Snapshot id → item ids that cannot be restored whole.
    pub affected: BTreeMap<String, BTreeSet<String>>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.bad_blobs.is_empty()
    }
}

pub fn verify(repo: &Repository, read_data: bool) -> anyhow::Result<Report> {
    let store = &repo.store;
    let mut r = Report::default();
    let mut bad: HashMap<BlobId, String> = HashMap::new();

    // Packs named by the index are all there, and big enough.
    let index = store.index();
    let mut by_pack: HashMap<PackId, Vec<pack::PackedBlob>> = HashMap::new();
    for loc in index.blobs.values() {
        by_pack.entry(loc.pack).or_default().push(loc.blob);
    }
    r.packs = by_pack.len();
    for (p, blobs) in &by_pack {
        let path = pack::pack_path(store.root(), p);
        let need = blobs
            .iter()
            .map(|b| b.offset + u64::from(b.len))
            .max()
            .unwrap_or(0);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() >= need => {}
            Ok(_) => {
                r.errors.push(format!("pack {p} is truncated"));
                for b in blobs {
                    bad.insert(b.id, format!("pack {p} is truncated"));
                }
            }
            Err(e) => {
                r.errors.push(format!("pack {p} is missing: {e}"));
                for b in blobs {
                    bad.insert(b.id, format!("pack {p} is missing"));
                }
            }
        }
    }

    // Every byte of every pack, each blob opened and checked against its id.
    if read_data {
        for (p, blobs) in &by_pack {
            let path = pack::pack_path(store.root(), p);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if *blake3::hash(&bytes).as_bytes() != p.0 {
                r.errors
                    .push(format!("pack {p}: its content does not match its name"));
            }
            for b in blobs {
                r.blobs_checked += 1;
                let Some(sealed) =
                    bytes.get(b.offset as usize..(b.offset + u64::from(b.len)) as usize)
                else {
                    continue;
                };
                if let Err(e) = blob::decode(store.cipher(), &b.id, b.raw_len, sealed) {
                    let why = match e {
                        StoreError::Damaged { why, .. } => why,
                        e => e.to_string(),
                    };
                    bad.insert(b.id, format!("in pack {p}: {why}"));
                }
            }
        }
    }

    // Snapshots: readable, their item lists present, their content indexed.
    let known: HashSet<BlobId> = index.blobs.keys().copied().collect();
    drop(index);
    let snaps = match store.snapshots() {
        Ok(s) => s,
        Err(e) => {
            r.errors.push(format!("snapshots: {e}"));
            Vec::new()
        }
    };
    r.snapshots = snaps.len();
    for s in &snaps {
        for t in &s.tree {
            if !known.contains(t) {
                bad.entry(*t)
                    .or_insert_with(|| "missing from the index".into());
            }
        }
        if s.tree.iter().any(|t| bad.contains_key(t)) {
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
        let items = repo.catalog.items(&s.id, None)?;
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
    }
    r.bad_blobs = bad.into_iter().map(|(k, v)| (k.to_hex(), v)).collect();
    Ok(r)
}
