//! A map from blob ids to small values, for the index: most entries in one
//! table sorted by id, the newest in a hash map that is merged into the
//! table whenever it reaches an eighth of it.
//!
//! Every blob of a repository has an entry, so this is what an open
//! repository's memory grows with. A hash map of 1,000,000 entries held
//! 57 bytes an entry over room for 2,097,152, and while it grew, the old
//! table beside the new: about 180 MB at the peak of a 1,000,000-file
//! backup (issue 12). The sorted table holds 56 bytes an entry with no
//! room to spare and grows in place (a large `realloc` moves pages, not
//! bytes), so the peak is about 56 bytes an entry plus the recent eighth.
//!
//! Ids are BLAKE3 digests, spread evenly: a directory keyed by an id's
//! first bits (one entry for about every 8 ids, 1 byte an id) says where
//! in the table the ids starting with them are, and a lookup searches only
//! those, a few neighbouring entries. Galloping from where an id's first
//! bytes predict it (its rank strays from there by hundreds) made a re-run
//! of 1,000,000 files 20% slower than a hash map did. Ids that bunch (in
//! an encrypted repository a guest cannot aim them without the key; in a
//! plain one it can, by trying) cost a binary search of their bunch, no
//! more.

use std::collections::HashMap;

use super::crypto::BlobId;
use super::index::IdHash;

/// Recent entries are merged into the table once they are this many and an
/// eighth of it.
const MERGE_AT_LEAST: usize = 4096;

/// Ids per directory entry, about.
const PER_BUCKET: usize = 8;

pub(crate) struct IdTable<V> {
    /// Sorted by id, each id once, none of them in `recent`.
    sorted: Vec<(BlobId, V)>,
    /// `dir[p]` is where the ids whose first `bits` bits are `p` start in
    /// `sorted`; `dir[p + 1]`, where they end.
    dir: Vec<usize>,
    bits: u32,
    recent: HashMap<BlobId, V, IdHash>,
}

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        Self {
            sorted: Vec::new(),
            dir: vec![0, 0],
            bits: 0,
            recent: HashMap::default(),
        }
    }
}

/// The first `bits` bits of `id` (at most 32).
fn top(id: &BlobId, bits: u32) -> usize {
    let first = u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
    match bits {
        0 => 0,
        b => (first >> (32 - b)) as usize,
    }
}

impl<V: Copy> IdTable<V> {
    pub(crate) fn get(&self, id: &BlobId) -> Option<&V> {
        if !self.recent.is_empty() {
            if let Some(v) = self.recent.get(id) {
                return Some(v);
            }
        }
        self.find(id).ok().map(|i| &self.sorted[i].1)
    }

    pub(crate) fn contains_key(&self, id: &BlobId) -> bool {
        self.get(id).is_some()
    }

    /// Sets the value of `id`, whether it has one or not.
    pub(crate) fn insert(&mut self, id: BlobId, v: V) {
        if let Ok(i) = self.find(&id) {
            self.sorted[i].1 = v;
            return;
        }
        self.recent.insert(id, v);
        if self.recent.len() >= MERGE_AT_LEAST.max(self.sorted.len() / 8) {
            self.merge();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&BlobId, &V)> + '_ {
        self.sorted
            .iter()
            .map(|(id, v)| (id, v))
            .chain(self.recent.iter())
    }

    /// Merges the recent entries into the table, in place from its end.
    fn merge(&mut self) {
        let mut new: Vec<(BlobId, V)> = std::mem::take(&mut self.recent).into_iter().collect();
        new.sort_unstable_by_key(|e| e.0);
        let Some(&filler) = new.first() else {
            return;
        };
        let old = self.sorted.len();
        self.sorted.reserve_exact(new.len());
        self.sorted.resize(old + new.len(), filler);
        // Filled from the end: the place written, `i + j - 1`, is always at
        // or beyond the next old entry (`i - 1`), which is read first.
        let mut i = old;
        let mut j = new.len();
        while j > 0 {
            let k = i + j - 1;
            if i > 0 && self.sorted[i - 1].0 > new[j - 1].0 {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = new[j - 1];
                j -= 1;
            }
        }
        self.index();
    }

    /// Rebuilds the directory for the table as it is.
    fn index(&mut self) {
        let n = self.sorted.len();
        self.bits = (n / PER_BUCKET).max(1).ilog2().min(24);
        let buckets = 1usize << self.bits;
        self.dir.clear();
        self.dir.reserve_exact(buckets + 1);
        let mut at = 0;
        for p in 0..buckets {
            while at < n && top(&self.sorted[at].0, self.bits) < p {
                at += 1;
            }
            self.dir.push(at);
        }
        self.dir.push(n);
    }

    /// Where `id` is in the table (`Ok`), or would be (`Err`).
    fn find(&self, id: &BlobId) -> Result<usize, usize> {
        let p = top(id, self.bits);
        let (lo, hi) = (self.dir[p], self.dir[p + 1]);
        match self.sorted[lo..hi].binary_search_by(|e| e.0.cmp(id)) {
            Ok(i) => Ok(lo + i),
            Err(i) => Err(lo + i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u64, bunched: bool) -> BlobId {
        let h = blake3::hash(&seed.to_le_bytes());
        let mut b = *h.as_bytes();
        if bunched {
            // Ids that share most of the first 8 bytes: the guess is wrong.
            b[..7].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0]);
        }
        BlobId(b)
    }

    /// The table answers as a hash map does, over inserts of new ids and
    /// of ids it has (in the table and in the recent part), many merges,
    /// evenly spread ids and bunched ones, and ids it lacks on either side
    /// of every entry.
    #[test]
    fn the_table_answers_as_a_hash_map_does() {
        for bunched in [false, true] {
            let mut t: IdTable<u64> = IdTable::default();
            let mut model: HashMap<BlobId, u64> = HashMap::new();
            let mut seed = 1u64;
            for round in 0..60_000u64 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Mostly new ids; one in five an earlier one, changed.
                let k = if seed >> 61 == 0 && round > 0 {
                    (seed >> 8) % round
                } else {
                    round
                };
                let key = id(k, bunched);
                t.insert(key, round);
                model.insert(key, round);
                if round % 7_919 == 0 {
                    assert_eq!(t.len(), model.len());
                    for (k, v) in &model {
                        assert_eq!(t.get(k), Some(v));
                    }
                }
            }
            assert!(t.sorted.len() > 50_000, "merged: {}", t.sorted.len());
            assert!(
                t.sorted.windows(2).all(|w| w[0].0 < w[1].0),
                "sorted, once each"
            );
            assert_eq!(t.len(), model.len());
            for (k, v) in &model {
                assert_eq!(t.get(k), Some(v));
            }
            let mut seen: Vec<(BlobId, u64)> = t.iter().map(|(k, v)| (*k, *v)).collect();
            seen.sort();
            let mut want: Vec<(BlobId, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            want.sort();
            assert_eq!(seen, want);
            // Absent ids: beside each entry, and at both ends.
            for (k, _) in want.iter().step_by(13) {
                for delta in [1u8, 255] {
                    let mut b = k.0;
                    b[31] = b[31].wrapping_add(delta);
                    let near = BlobId(b);
                    assert_eq!(t.get(&near).is_some(), model.contains_key(&near));
                }
            }
            assert!(!t.contains_key(&BlobId([0; 32])));
            assert!(!t.contains_key(&BlobId([0xff; 32])));
        }
    }
}
