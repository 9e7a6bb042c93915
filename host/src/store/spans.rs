//! Reading many blobs from a remote repository in few requests: a restore
//! needs its chunks in stream order, and the chunks of neighbouring files
//! were written near each other, though spread over the few packs a backup
//! fills at once. [`plan`] cuts the list into batches (at most
//! [`BATCH_SEALED`] stored and [`BATCH_PLAIN`] plain bytes, [`BATCH_PACKS`]
//! packs); within a batch, the blobs of each pack are sorted and joined
//! into ranges, each one ranged read (gaps of up to [`GAP`] are read and
//! thrown away: a request costs more than that, and a range stays within
//! [`SPAN_BYTES`]). [`fetch_ahead`] reads the ranges on [`FETCHERS`]
//! threads at once while the caller decodes earlier batches, at most
//! [`WINDOW`] ranges ahead of it: memory stays bounded whatever the
//! restore's size.
//!
//! On object storage, where each request is a round trip, this replaces a
//! ranged GET per chunk. A local directory reads chunk by chunk; a restore
//! only tells it these ranges ahead ([`Store::will_read`]), so that the
//! kernel reads them into its page cache first (see [`Backend::remote`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Condvar, Mutex};

use super::backend::Backend;
use super::crypto::BlobId;
use super::index::Location;
use super::pack::{pack_key, PackId};
use super::{Store, StoreError};

/// Most bytes read by one request.
pub(crate) const SPAN_BYTES: u64 = 8 << 20;
/// Most stored bytes of the blobs of one batch.
pub(crate) const BATCH_SEALED: u64 = 8 << 20;
/// Most plain bytes of the blobs of one batch: they are decoded and handed
/// on together.
pub(crate) const BATCH_PLAIN: u64 = 8 << 20;
/// Most packs one batch reads from.
pub(crate) const BATCH_PACKS: usize = 4;
/// Largest stretch of unneeded bytes read to join two blobs in one request.
pub(crate) const GAP: u64 = 256 << 10;
/// Requests in flight at once.
pub(crate) const FETCHERS: usize = 4;
/// Most ranges fetched and not yet taken by the caller.
pub(crate) const WINDOW: usize = 4;

/// One ranged read of a pack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Range {
    pub pack: PackId,
    pub start: u64,
    pub len: u64,
}

/// One blob a batch serves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part {
    pub id: BlobId,
    /// The batch's range holding it; `None` when the index lacks it (its
    /// read then fails, naming the blob, as it always did).
    pub range: Option<usize>,
    /// Where its stored bytes start, from the range's start.
    pub at: usize,
    pub len: u32,
    pub raw_len: u32,
}

/// Blobs in stream order, and the reads that hold them.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub ranges: Vec<Range>,
    pub parts: Vec<Part>,
}

/// Cuts `blobs` (in the order they are needed) into batches and their
/// reads. Concatenated, the batches' parts are `blobs`, in order.
pub(crate) fn plan(store: &Store, blobs: &[&BlobId]) -> Vec<Batch> {
    let idx = store.index();
    let mut out = Vec::new();
    let mut cur: Vec<(BlobId, Option<Location>)> = Vec::new();
    let (mut sealed, mut plain) = (0u64, 0u64);
    let mut packs: HashSet<PackId> = HashSet::new();
    for id in blobs {
        let loc = idx.get(id);
        if let Some(l) = loc {
            let (len, raw) = (u64::from(l.blob.len), u64::from(l.blob.raw_len));
            let full = sealed + len > BATCH_SEALED
                || plain + raw > BATCH_PLAIN
                || (!packs.contains(&l.pack) && packs.len() >= BATCH_PACKS);
            if full && !cur.is_empty() {
                out.push(batch(std::mem::take(&mut cur)));
                (sealed, plain) = (0, 0);
                packs.clear();
            }
            sealed += len;
            plain += raw;
            packs.insert(l.pack);
        }
        cur.push((**id, loc));
    }
    if !cur.is_empty() {
        out.push(batch(cur));
    }
    out
}

/// The reads of one batch's blobs: per pack, sorted by offset, neighbours
/// joined.
fn batch(blobs: Vec<(BlobId, Option<Location>)>) -> Batch {
    let end = |l: &Location| l.blob.offset.saturating_add(u64::from(l.blob.len));
    let mut need: Vec<(PackId, u64, u64)> = blobs
        .iter()
        .filter_map(|(_, l)| l.as_ref().map(|l| (l.pack, l.blob.offset, end(l))))
        .collect();
    need.sort_unstable();
    need.dedup();
    let mut ranges: Vec<Range> = Vec::new();
    for (pack, start, stop) in need {
        if let Some(r) = ranges.last_mut() {
            if r.pack == pack
                && start <= (r.start + r.len).saturating_add(GAP)
                && stop - r.start <= SPAN_BYTES
            {
                r.len = r.len.max(stop - r.start);
                continue;
            }
        }
        ranges.push(Range {
            pack,
            start,
            len: stop - start,
        });
    }
    let parts = blobs
        .into_iter()
        .map(|(id, loc)| match loc {
            None => Part {
                id,
                range: None,
                at: 0,
                len: 0,
                raw_len: 0,
            },
            Some(l) => {
                // The last range of the pack starting at or before the
                // blob: it holds the blob, since every blob's bytes went
                // into a range.
                let i = ranges
                    .partition_point(|r| (r.pack, r.start) <= (l.pack, l.blob.offset))
                    .saturating_sub(1);
                Part {
                    id,
                    range: Some(i),
                    at: (l.blob.offset - ranges[i].start) as usize,
                    len: l.blob.len,
                    raw_len: l.blob.raw_len,
                }
            }
        })
        .collect();
    Batch { ranges, parts }
}

/// The bytes of one range: all of them, or an error (a pack shorter than
/// the index says is one; the caller then reads blob by blob, which names
/// what is wrong and tries other copies).
fn fetch(b: &dyn Backend, r: &Range) -> Result<Vec<u8>, StoreError> {
    let key = pack_key(&r.pack);
    let len = usize::try_from(r.len)
        .map_err(|_| StoreError::Invalid(format!("a read of {} bytes", r.len)))?;
    let mut buf = vec![0u8; len];
    let got = b.read_at(&key, r.start, &mut buf)?;
    if got < len {
        return Err(StoreError::Corrupt(format!(
            "{}: shorter than its index says",
            b.name(&key).display()
        )));
    }
    Ok(buf)
}

/// The bytes of each of a batch's ranges, in order, or why a read failed.
pub(crate) type Fetched = Vec<Result<Vec<u8>, StoreError>>;

/// What the fetchers and the caller share.
struct State {
    /// The next read a fetcher takes.
    next: usize,
    /// Reads the caller has taken.
    taken: usize,
    /// Reads done and not yet taken.
    done: BTreeMap<usize, Result<Vec<u8>, StoreError>>,
    /// The caller stopped.
    stop: bool,
}

/// Reads the ranges of `batches` from `b`, [`FETCHERS`] at a time and at
/// most [`WINDOW`] ahead of the caller, and gives each batch with its
/// ranges' bytes (in the order of [`Batch::ranges`]) to `each`, in order,
/// on this thread. Stops early when `each` returns `false`.
pub(crate) fn fetch_ahead(
    b: &dyn Backend,
    batches: &[Batch],
    each: &mut dyn FnMut(&Batch, Fetched) -> bool,
) {
    let reads: Vec<&Range> = batches.iter().flat_map(|b| &b.ranges).collect();
    let state = Mutex::new(State {
        next: 0,
        taken: 0,
        done: BTreeMap::new(),
        stop: false,
    });
    let cv = Condvar::new();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let wait = |g| cv.wait(g).unwrap_or_else(|p| p.into_inner());
    std::thread::scope(|scope| {
        for _ in 0..FETCHERS.min(reads.len()) {
            scope.spawn(|| loop {
                let i = {
                    let mut g = lock();
                    while !g.stop && g.next < reads.len() && g.next >= g.taken + WINDOW {
                        g = wait(g);
                    }
                    if g.stop || g.next >= reads.len() {
                        return;
                    }
                    g.next += 1;
                    g.next - 1
                };
                // A panic would leave the caller waiting for this read.
                let got =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fetch(b, reads[i])))
                        .unwrap_or_else(|_| {
                            Err(StoreError::Io(std::io::Error::other(
                                "reading a pack panicked",
                            )))
                        });
                lock().done.insert(i, got);
                cv.notify_all();
            });
        }
        let mut i = 0;
        for batch in batches {
            let mut got = Vec::with_capacity(batch.ranges.len());
            for _ in &batch.ranges {
                let mut g = lock();
                loop {
                    if let Some(r) = g.done.remove(&i) {
                        got.push(r);
                        i += 1;
                        g.taken = i;
                        break;
                    }
                    g = wait(g);
                }
                drop(g);
                cv.notify_all();
            }
            if !each(batch, got) {
                lock().stop = true;
                cv.notify_all();
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::tests::Counting;
    use crate::store::pack::BlobKind;

    /// Neighbouring blobs are read in one request each pack, in order,
    /// repeats and blobs the index lacks included; memory stays bounded
    /// by the window, and a caller that stops early stops the reads.
    #[test]
    fn neighbouring_blobs_are_read_together_in_order() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::init(&d.path().join("r"), None).unwrap();
        let mut ids = Vec::new();
        {
            let mut w = store.writer();
            for i in 0..300u32 {
                let mut data = vec![0u8; 100_000];
                crate::store::crypto::random(&mut data).unwrap();
                data[..4].copy_from_slice(&i.to_le_bytes());
                ids.push(w.add(BlobKind::Data, &data).unwrap());
            }
            w.commit().unwrap();
        }
        let packs = store.index().files.values().flatten().count();
        assert!(packs >= 3, "{packs} packs");
        let missing = BlobId([7; 32]);
        let mut want: Vec<&BlobId> = ids.iter().collect();
        want.insert(5, &ids[3]);
        want.push(&missing);
        let batches = plan(&store, &want);
        let parts: Vec<BlobId> = batches
            .iter()
            .flat_map(|b| b.parts.iter().map(|p| p.id))
            .collect();
        assert_eq!(parts, want.iter().map(|i| **i).collect::<Vec<_>>());
        let ranges: Vec<&Range> = batches.iter().flat_map(|b| &b.ranges).collect();
        assert!(ranges.iter().all(|r| r.len <= SPAN_BYTES));
        // 30 MB of blobs in a few reads of up to 8 MiB.
        assert!(ranges.len() <= packs * 3, "{} reads", ranges.len());
        // Stream order across packs (a backup fills several at once) still
        // reads each pack's neighbours together.
        // Here the blobs of all packs taken in turn, one of each.
        let mut by_pack: BTreeMap<PackId, Vec<&BlobId>> = BTreeMap::new();
        for id in &ids {
            by_pack
                .entry(store.index().get(id).expect("indexed").pack)
                .or_default()
                .push(id);
        }
        let mut turns = Vec::new();
        for k in 0..by_pack.values().map(Vec::len).max().unwrap() {
            turns.extend(by_pack.values().filter_map(|v| v.get(k)));
        }
        assert_eq!(turns.len(), ids.len());
        let n = plan(&store, &turns)
            .iter()
            .map(|b| b.ranges.len())
            .sum::<usize>();
        assert!(
            n <= packs * 6 && n < ids.len() / 10,
            "{n} reads for {packs} packs"
        );
        let b = Counting::new(&d.path().join("r"));
        let mut got = Vec::new();
        fetch_ahead(&b, &batches, &mut |batch, bytes| {
            assert_eq!(bytes.len(), batch.ranges.len());
            for p in &batch.parts {
                let Some(r) = p.range else {
                    got.push(
                        store
                            .read_blob(&p.id)
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                    );
                    continue;
                };
                let bytes = bytes[r].as_ref().unwrap();
                let mut sealed = bytes[p.at..p.at + p.len as usize].to_vec();
                let mut plain = Vec::new();
                crate::store::blob::decode_into(
                    store.cipher(),
                    &p.id,
                    p.raw_len,
                    &mut sealed,
                    &mut plain,
                )
                .unwrap();
                assert_eq!(plain, store.read_blob(&p.id).unwrap());
                got.push(Ok(()));
            }
            true
        });
        assert_eq!(got.len(), want.len());
        assert!(got[..want.len() - 1].iter().all(Result::is_ok));
        assert!(got
            .last()
            .unwrap()
            .as_ref()
            .unwrap_err()
            .contains("missing"));
        assert_eq!(b.ranged(), ranges.len());
        // Stopping after the first batch: the fetchers stop within the window.
        let b = Counting::new(&d.path().join("r"));
        fetch_ahead(&b, &batches, &mut |_, _| false);
        assert!(b.ranged() <= batches[0].ranges.len() + WINDOW + FETCHERS);
    }
}
