//! The index: which pack holds each blob. Index files list whole packs and
//! are written only after those packs are durable, each after the file
//! header ([`header::INDEX`]; files written before it have none and still
//! read); a snapshot is written only
//! after the index files naming its blobs. Loaded into memory on open.
//!
//! A damaged index file does not make the repository unusable: it is left
//! out (and named in [`Index::damaged_files`]); the blobs only it listed look
//! absent, so a backup stores them again, and `attache repair index`
//! rebuilds the index from the packs. Locations known to be damaged (a
//! truncated pack, a blob that fails its check) are marked, and a blob is
//! then read from another copy if one exists, or stored again by the next
//! backup.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::backend::{self, Backend};
use super::crypto::{BlobId, Cipher};
use super::header;
use super::object_cache::ObjectCache;
use super::pack::{compress_json, decompress_json, parse_id, PackId, PackedBlob};
use super::StoreError;

/// Largest index file read: a real one lists at most a backup's packs.
pub(crate) const MAX_FILE: u64 = 1 << 30;

/// One index file: packs and their blobs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    pub packs: Vec<IndexedPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IndexedPack {
    pub pack: PackId,
    pub blobs: Vec<PackedBlob>,
}

/// Where a blob is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Location {
    pub pack: PackId,
    pub blob: PackedBlob,
}

/// All index files, merged.
#[derive(Default)]
pub(crate) struct Index {
    /// Each blob's preferred location: one not known to be damaged, when
    /// there is one.
    pub blobs: HashMap<BlobId, Location, IdHash>,
    /// Further copies of blobs stored more than once (after damage).
    pub copies: HashMap<BlobId, Vec<Location>>,
    /// Index file id → the packs it lists.
    pub files: HashMap<BlobId, Vec<PackId>>,
    /// Index files that could not be read, and why.
    pub damaged_files: Vec<(PathBuf, String)>,
    /// Locations known to be damaged, with why.
    pub bad: HashMap<(PackId, BlobId), String, IdHash>,
}

/// The hasher of the maps keyed by blob ids, which are looked up for every
/// chunk of a backup: foldhash, seeded per process, instead of the standard
/// SipHash, which took 3–4% of a re-run's CPU on 32-byte keys (issue 12).
/// The ids are BLAKE3 digests a guest cannot aim at one bucket without the
/// seed.
pub(crate) type IdHash = foldhash::fast::RandomState;

impl Index {
    /// Loads every index file of the repository; damaged ones are skipped
    /// and listed in `damaged_files`. With `cache`, files are read from
    /// (and kept in) the local copy of the repository's index files.
    pub(crate) fn load(
        b: &dyn Backend,
        cipher: &Cipher,
        cache: Option<&ObjectCache>,
    ) -> Result<Self, StoreError> {
        let mut idx = Index::default();
        let listed = b.list("index")?;
        if let Some(c) = cache {
            c.retain("index", &listed);
        }
        for e in listed {
            let Some(id) = parse_id(backend::base(&e.key)) else {
                continue;
            };
            let p = b.name(&e.key);
            match read_index(b, &e.key, e.size, cipher, cache) {
                Ok(file) => idx.add(id, &file),
                // Leaving out a newer attache's index file would make its
                // packs look unreferenced (and prune remove them): refuse.
                Err(e @ StoreError::Invalid(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!("{e}; its blobs are left out (run `attache repair index`)");
                    idx.damaged_files.push((p, e.to_string()));
                }
            }
        }
        idx.damaged_files.sort();
        Ok(idx)
    }

    /// Adds the packs of one index file.
    pub(crate) fn add(&mut self, file_id: BlobId, file: &IndexFile) {
        let mut packs = Vec::new();
        for p in &file.packs {
            packs.push(p.pack);
            for b in &p.blobs {
                self.insert(Location {
                    pack: p.pack,
                    blob: *b,
                });
            }
        }
        self.files.insert(file_id, packs);
    }

    fn insert(&mut self, loc: Location) {
        let id = loc.blob.id;
        match self.blobs.get(&id).copied() {
            None => {
                self.blobs.insert(id, loc);
            }
            Some(cur) if cur.pack == loc.pack => {}
            Some(cur) => {
                let (keep, other) = if self.is_bad(&cur) && !self.is_bad(&loc) {
                    (loc, cur)
                } else {
                    (cur, loc)
                };
                self.blobs.insert(id, keep);
                self.copies.entry(id).or_default().push(other);
            }
        }
    }

    fn is_bad(&self, loc: &Location) -> bool {
        // Nearly always none: no key to hash.
        !self.bad.is_empty() && self.bad.contains_key(&(loc.pack, loc.blob.id))
    }

    /// Records that a blob's copy in `pack` is damaged; another copy, if
    /// any, becomes the preferred one.
    pub(crate) fn mark_bad(&mut self, pack: PackId, blob: BlobId, why: String) {
        self.bad.insert((pack, blob), why);
        let Some(cur) = self.blobs.get(&blob).copied() else {
            return;
        };
        if cur.pack != pack {
            return;
        }
        let copies = self.copies.entry(blob).or_default();
        let bad = &self.bad;
        if let Some(i) = copies
            .iter()
            .position(|l| !bad.contains_key(&(l.pack, l.blob.id)))
        {
            let good = copies.swap_remove(i);
            copies.push(cur);
            self.blobs.insert(blob, good);
        }
    }

    /// Whether a usable copy of `id` is indexed.
    pub(crate) fn has_good(&self, id: &BlobId) -> bool {
        self.blobs.get(id).is_some_and(|l| !self.is_bad(l))
    }

    /// Why the preferred copy of `id` is known to be damaged, if it is.
    pub(crate) fn why_bad(&self, id: &BlobId) -> Option<&str> {
        let l = self.blobs.get(id)?;
        self.bad.get(&(l.pack, l.blob.id)).map(String::as_str)
    }
}

/// Parses an index file's bytes: the file header ([`header::INDEX`];
/// none in files of before it), then sealed, compressed JSON.
pub(crate) fn decode(cipher: &Cipher, file: &[u8], what: &str) -> Result<IndexFile, StoreError> {
    let sealed = header::INDEX.strip(file)?;
    let plain = cipher
        .open(sealed)
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
    decompress_json(&plain, what)
}

/// Reads and parses one index file, `len` bytes as listed (from `cache`
/// when given and it has a good copy); errors name it.
pub(crate) fn read_index(
    b: &dyn Backend,
    key: &str,
    len: u64,
    cipher: &Cipher,
    cache: Option<&ObjectCache>,
) -> Result<IndexFile, StoreError> {
    let path = &b.name(key);
    if len > MAX_FILE {
        return Err(StoreError::damaged(
            path,
            format!("{len} bytes is too large for an index file"),
        ));
    }
    let sealed = match cache {
        Some(c) => c.read(b, key)?,
        None => b.read(key)?,
    };
    decode(cipher, &sealed, "index file").map_err(|e| match e {
        // A newer attache's file is not damage: said as it is, with the path.
        StoreError::Invalid(why) => StoreError::Invalid(format!("{}: {why}", path.display())),
        StoreError::Corrupt(why) => StoreError::damaged(path, why),
        StoreError::Json { what, source } => StoreError::damaged(path, format!("{what}: {source}")),
        e => StoreError::damaged(path, e.to_string()),
    })
}

/// Writes an index file durably; returns its id.
pub(crate) fn write_index(
    b: &dyn Backend,
    cipher: &Cipher,
    file: &IndexFile,
) -> Result<BlobId, StoreError> {
    let bytes = header::INDEX.prepend(&cipher.seal(&compress_json(file)?)?);
    let id = BlobId(*blake3::hash(&bytes).as_bytes());
    // Named by its content and written create-only: a commit never
    // replaces another writer's index file.
    backend::put_content(b, &index_key(&id), &bytes)?;
    Ok(id)
}

/// The key of an index file: `index/ID`.
pub(crate) fn index_key(id: &BlobId) -> String {
    format!("index/{}", id.to_hex())
}
