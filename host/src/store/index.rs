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
use super::id_table::IdTable;
use super::object_cache::ObjectCache;
use super::pack::{compress_json, decompress_json, parse_id, BlobKind, PackId, PackedBlob};
use super::StoreError;

/// Largest index file read. Files are written with at most about
/// [`FILE_BLOBS`] blobs (a few MB); older ones listed a whole backup.
pub(crate) const MAX_FILE: u64 = 1 << 30;

/// Blobs an index file is written with, at most (a pack larger than this
/// gets a file of its own): a backup writes one whenever its next durable
/// pack would take it past this many, and prune and repair split what
/// they write the same way ([`IndexBatch`]). Writing one file of a
/// whole backup held it twice more in memory (the list and its JSON) and
/// grew with the number of files backed up (issue 12); and a backup killed
/// part-way now leaves the packs it finished indexed, so the next one
/// does not store them again.
pub(crate) const FILE_BLOBS: usize = 32_768;

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

/// A blob's place as the index holds it: its pack by number (in
/// [`Index::packs`]), not by its 32-byte id, and not its own id again (the
/// map's key). 24 bytes instead of 88: every blob of the repository has
/// one, so this is most of an open repository's memory (7.9 MB of a
/// 47,602-item restore's heap, issue 12).
#[derive(Debug, Clone, Copy)]
struct Slot {
    offset: u64,
    pack: u32,
    len: u32,
    raw_len: u32,
    kind: BlobKind,
}

/// All index files, merged.
#[derive(Default)]
pub(crate) struct Index {
    /// Each blob's preferred location: one not known to be damaged, when
    /// there is one.
    blobs: IdTable<Slot>,
    /// The packs [`Slot::pack`] numbers, and each pack's number.
    packs: Vec<PackId>,
    pack_no: HashMap<PackId, u32, IdHash>,
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

    /// The preferred location of `id`, if it is indexed.
    pub(crate) fn get(&self, id: &BlobId) -> Option<Location> {
        self.blobs.get(id).map(|s| self.location(id, s))
    }

    /// Whether `id` is indexed (its copy may be damaged).
    pub(crate) fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// The ids of all blobs indexed.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &BlobId> + '_ {
        self.blobs.iter().map(|(id, _)| id)
    }

    /// The preferred location of every blob indexed.
    pub(crate) fn locations(&self) -> impl Iterator<Item = Location> + '_ {
        self.blobs.iter().map(|(id, s)| self.location(id, s))
    }

    /// The preferred locations, gathered by pack.
    pub(crate) fn blobs_by_pack(&self) -> HashMap<PackId, Vec<PackedBlob>> {
        let mut by_pack: HashMap<PackId, Vec<PackedBlob>> = HashMap::new();
        for loc in self.locations() {
            by_pack.entry(loc.pack).or_default().push(loc.blob);
        }
        by_pack
    }

    fn location(&self, id: &BlobId, s: &Slot) -> Location {
        Location {
            pack: self.packs[s.pack as usize],
            blob: PackedBlob {
                id: *id,
                kind: s.kind,
                offset: s.offset,
                len: s.len,
                raw_len: s.raw_len,
            },
        }
    }

    fn slot(&mut self, loc: &Location) -> Slot {
        let packs = &mut self.packs;
        // An index file lists a pack's blobs together.
        let pack = match packs.last() {
            Some(last) if *last == loc.pack => (packs.len() - 1) as u32,
            _ => *self.pack_no.entry(loc.pack).or_insert_with(|| {
                packs.push(loc.pack);
                // Beyond 4 billion packs (32 PiB of 8 MiB packs), numbers
                // would repeat; no repository comes near.
                (packs.len() - 1) as u32
            }),
        };
        Slot {
            offset: loc.blob.offset,
            pack,
            len: loc.blob.len,
            raw_len: loc.blob.raw_len,
            kind: loc.blob.kind,
        }
    }

    fn set(&mut self, loc: Location) {
        let slot = self.slot(&loc);
        self.blobs.insert(loc.blob.id, slot);
    }

    fn insert(&mut self, loc: Location) {
        let id = loc.blob.id;
        match self.get(&id) {
            None => self.set(loc),
            Some(cur) if cur.pack == loc.pack => {}
            Some(cur) => {
                let (keep, other) = if self.is_bad(&cur) && !self.is_bad(&loc) {
                    (loc, cur)
                } else {
                    (cur, loc)
                };
                self.set(keep);
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
        let Some(cur) = self.get(&blob) else {
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
            self.set(good);
        }
    }

    /// Whether a usable copy of `id` is indexed.
    pub(crate) fn has_good(&self, id: &BlobId) -> bool {
        self.get(id).is_some_and(|l| !self.is_bad(&l))
    }

    /// Why the preferred copy of `id` is known to be damaged, if it is.
    pub(crate) fn why_bad(&self, id: &BlobId) -> Option<&str> {
        let l = self.get(id)?;
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

/// Packs gathered into index files of at most [`FILE_BLOBS`] blobs, a
/// pack never split (one larger than that gets a file of its own): the one
/// rule for where a backup, prune and repair cut their index files.
#[derive(Debug, Default)]
pub(crate) struct IndexBatch {
    file: IndexFile,
    blobs: usize,
}

impl IndexBatch {
    /// Adds `pack`; returns the file gathered so far, to be written first,
    /// when `pack` would take it past [`FILE_BLOBS`].
    pub(crate) fn push(&mut self, pack: IndexedPack) -> Option<IndexFile> {
        let full = (self.blobs > 0 && self.blobs + pack.blobs.len() > FILE_BLOBS).then(|| {
            self.blobs = 0;
            std::mem::take(&mut self.file)
        });
        self.blobs += pack.blobs.len();
        self.file.packs.push(pack);
        full
    }

    /// What is gathered and not yet returned (no packs when none is).
    pub(crate) fn rest(self) -> IndexFile {
        self.file
    }
}

/// Writes `packs` durably as index files of at most [`FILE_BLOBS`] blobs
/// each (a pack is never split: see [`IndexBatch`]); returns their ids.
pub(crate) fn write_indexes(
    b: &dyn Backend,
    cipher: &Cipher,
    packs: Vec<IndexedPack>,
) -> Result<Vec<BlobId>, StoreError> {
    let mut ids = Vec::new();
    let mut batch = IndexBatch::default();
    for p in packs {
        if let Some(file) = batch.push(p) {
            ids.push(write_index(b, cipher, &file)?);
        }
    }
    let file = batch.rest();
    // An empty repository keeps one (empty) index file, as before.
    if !file.packs.is_empty() || ids.is_empty() {
        ids.push(write_index(b, cipher, &file)?);
    }
    Ok(ids)
}

/// The key of an index file: `index/ID`.
pub(crate) fn index_key(id: &BlobId) -> String {
    format!("index/{}", id.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: u8, offset: u64) -> PackedBlob {
        PackedBlob {
            id: BlobId([n; 32]),
            kind: if n.is_multiple_of(2) {
                BlobKind::Data
            } else {
                BlobKind::Tree
            },
            offset,
            len: 100 + u32::from(n),
            raw_len: 200 + u32::from(n),
        }
    }

    /// Blobs held by pack number give back every field of their location;
    /// a second copy in another pack is kept aside, and takes over when
    /// the first is marked damaged.
    #[test]
    fn the_compact_index_gives_back_whole_locations_and_keeps_copies() {
        let (p1, p2, p3) = (BlobId([0xa1; 32]), BlobId([0xa2; 32]), BlobId([0xa3; 32]));
        let mut idx = Index::default();
        let file = |packs: Vec<(PackId, Vec<PackedBlob>)>| IndexFile {
            packs: packs
                .into_iter()
                .map(|(pack, blobs)| IndexedPack { pack, blobs })
                .collect(),
        };
        idx.add(
            BlobId([1; 32]),
            &file(vec![
                (p1, vec![blob(1, 8), blob(2, 120)]),
                (p2, vec![blob(3, 8)]),
            ]),
        );
        // Another file: p1 again (not last), a copy of blob 2 in p3.
        idx.add(
            BlobId([2; 32]),
            &file(vec![(p3, vec![blob(2, 8)]), (p1, vec![blob(4, 500)])]),
        );
        for (n, pack, offset) in [(1, p1, 8), (2, p1, 120), (3, p2, 8), (4, p1, 500)] {
            let l = idx.get(&BlobId([n; 32])).expect("indexed");
            assert_eq!((l.pack, l.blob), (pack, blob(n, offset)), "blob {n}");
            assert!(idx.contains(&BlobId([n; 32])));
        }
        assert!(idx.get(&BlobId([9; 32])).is_none());
        // p3 holds only a copy, which is kept aside whole.
        assert_eq!(idx.packs.len(), 2, "each pack numbered once");
        let mut all: Vec<(u8, PackId)> =
            idx.locations().map(|l| (l.blob.id.0[0], l.pack)).collect();
        all.sort();
        assert_eq!(all, vec![(1, p1), (2, p1), (3, p2), (4, p1)]);
        assert_eq!(idx.ids().count(), 4);
        assert_eq!(idx.copies[&BlobId([2; 32])][0].pack, p3);
        idx.mark_bad(p1, BlobId([2; 32]), "torn".into());
        let l = idx.get(&BlobId([2; 32])).expect("indexed");
        assert_eq!(
            (l.pack, l.blob),
            (p3, blob(2, 8)),
            "the good copy is preferred"
        );
        assert!(idx.has_good(&BlobId([2; 32])));
        assert_eq!(idx.packs.len(), 3);
    }

    /// Prune and repair write what they keep in files of at most
    /// [`FILE_BLOBS`] blobs, a pack never split; together they index every
    /// blob once.
    #[test]
    fn packs_written_together_are_split_into_bounded_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("index")).unwrap();
        let be = backend::local::LocalBackend::new(d.path());
        let cipher = Cipher::None;
        // Packs of 10,000 blobs, and one larger than a file's share.
        let sizes = [10_000, 10_000, 10_000, 10_000, FILE_BLOBS + 5, 7];
        let mut n: u32 = 0;
        let packs: Vec<IndexedPack> = sizes
            .iter()
            .enumerate()
            .map(|(p, &size)| IndexedPack {
                pack: BlobId([p as u8 + 1; 32]),
                blobs: (0..size)
                    .map(|_| {
                        n += 1;
                        let mut id = [0u8; 32];
                        id[..4].copy_from_slice(&n.to_le_bytes());
                        PackedBlob {
                            id: BlobId(id),
                            kind: BlobKind::Data,
                            offset: 0,
                            len: 1,
                            raw_len: 1,
                        }
                    })
                    .collect(),
            })
            .collect();
        let ids = write_indexes(&be, &cipher, packs).unwrap();
        // Files of 30,000 | 10,000 (with the large pack it would pass the
        // bound) | the large pack alone | 7.
        assert_eq!(ids.len(), 4);
        let idx = Index::load(&be, &cipher, None).unwrap();
        assert_eq!(idx.ids().count(), n as usize);
        let mut packs_seen = 0;
        for id in &ids {
            let file = read_index(&be, &index_key(id), 1 << 20, &cipher, None).unwrap();
            let blobs: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
            assert!(blobs <= FILE_BLOBS || file.packs.len() == 1, "{blobs}");
            packs_seen += file.packs.len();
        }
        assert_eq!(packs_seen, sizes.len(), "no pack split or lost");
    }
}
