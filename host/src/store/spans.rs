//! Reading many blobs from a remote repository in few requests: a restore
//! needs its chunks in stream order, and consecutive chunks of a file were
//! mostly written next to each other in one pack. [`plan`] cuts the list
//! into spans, each one ranged read of a pack covering neighbouring blobs
//! (gaps of up to [`GAP`] are read and thrown away: a request costs more
//! than that many bytes), and [`fetch_ahead`] reads the spans on
//! [`FETCHERS`] threads at once while the caller decodes earlier ones, at
//! most [`WINDOW`] spans held. Memory is bounded by
//! `WINDOW × SPAN_BYTES` of fetched bytes, whatever the restore's size.
//!
//! On object storage, where each request is a round trip, this replaces a
//! ranged GET per chunk. A local directory reads chunk by chunk, from the
//! page cache (see [`Backend::remote`]).

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};

use super::backend::Backend;
use super::crypto::BlobId;
use super::pack::{pack_key, PackId};
use super::{Store, StoreError};

/// Most bytes read by one request.
pub(crate) const SPAN_BYTES: u64 = 8 << 20;
/// Most plain bytes of the blobs one span serves: a span's blobs are
/// decoded and handed on together.
pub(crate) const SPAN_PLAIN: u64 = 16 << 20;
/// Largest stretch of unneeded bytes read to join two blobs in one request.
pub(crate) const GAP: u64 = 1 << 20;
/// Requests in flight at once.
pub(crate) const FETCHERS: usize = 4;
/// Most spans fetched and not yet taken by the caller.
pub(crate) const WINDOW: usize = 6;

/// One blob a span serves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part {
    pub id: BlobId,
    /// Where its stored bytes start, from the span's start.
    pub at: usize,
    pub len: u32,
    pub raw_len: u32,
}

/// One ranged read of a pack and the blobs (in stream order) it serves.
/// A span without a pack serves one blob the index lacks: reading it
/// fails, naming the blob, as it always did.
#[derive(Debug)]
pub(crate) struct Span {
    pub pack: Option<PackId>,
    pub start: u64,
    pub len: u64,
    pub parts: Vec<Part>,
    /// Plain bytes of the parts.
    plain: u64,
}

/// Cuts `blobs` (in the order they are needed) into spans: a blob joins
/// the span before it when both are in the same pack, and it lies inside
/// the span or at most [`GAP`] bytes past its end, and the span stays
/// within [`SPAN_BYTES`] and [`SPAN_PLAIN`]. Concatenated, the spans'
/// parts are `blobs`, in order.
pub(crate) fn plan(store: &Store, blobs: &[&BlobId]) -> Vec<Span> {
    let idx = store.index();
    let mut spans: Vec<Span> = Vec::new();
    for id in blobs {
        let Some(loc) = idx.blobs.get(*id) else {
            spans.push(Span {
                pack: None,
                start: 0,
                len: 0,
                parts: vec![Part {
                    id: **id,
                    at: 0,
                    len: 0,
                    raw_len: 0,
                }],
                plain: 0,
            });
            continue;
        };
        let (off, len, raw) = (loc.blob.offset, loc.blob.len, loc.blob.raw_len);
        let end = off.saturating_add(u64::from(len));
        if let Some(s) = spans.last_mut() {
            let s_end = s.start + s.len;
            let fits_plain = s.plain + u64::from(raw) <= SPAN_PLAIN;
            if s.pack == Some(loc.pack) && off >= s.start && fits_plain {
                let inside = end <= s_end;
                let joins = off <= s_end.saturating_add(GAP) && end - s.start <= SPAN_BYTES;
                if inside || joins {
                    s.len = s.len.max(end - s.start);
                    s.plain += u64::from(raw);
                    s.parts.push(Part {
                        id: **id,
                        at: (off - s.start) as usize,
                        len,
                        raw_len: raw,
                    });
                    continue;
                }
            }
        }
        spans.push(Span {
            pack: Some(loc.pack),
            start: off,
            len: u64::from(len),
            parts: vec![Part {
                id: **id,
                at: 0,
                len,
                raw_len: raw,
            }],
            plain: u64::from(raw),
        });
    }
    spans
}

/// The bytes of one span: all of them, or an error (a pack shorter than
/// the index says is one; the caller then reads blob by blob, which names
/// what is wrong and tries other copies).
fn fetch(b: &dyn Backend, span: &Span) -> Result<Vec<u8>, StoreError> {
    let Some(pack) = &span.pack else {
        return Ok(Vec::new());
    };
    let len = usize::try_from(span.len)
        .map_err(|_| StoreError::Invalid(format!("a read of {} bytes", span.len)))?;
    let mut buf = vec![0u8; len];
    let got = b.read_at(&pack_key(pack), span.start, &mut buf)?;
    if got < len {
        return Err(StoreError::Corrupt(format!(
            "{}: shorter than its index says",
            b.name(&pack_key(pack)).display()
        )));
    }
    Ok(buf)
}

/// What the fetchers and the caller share.
struct State {
    /// The next span a fetcher takes.
    next: usize,
    /// Spans the caller has taken.
    taken: usize,
    /// Fetched spans not yet taken.
    done: BTreeMap<usize, Result<Vec<u8>, StoreError>>,
    /// The caller stopped.
    stop: bool,
}

/// Reads `spans` from `b`, [`FETCHERS`] at a time and at most [`WINDOW`]
/// ahead of the caller, and gives each span's bytes to `each` in order on
/// this thread. Stops early when `each` returns `false`.
pub(crate) fn fetch_ahead(
    b: &dyn Backend,
    spans: &[Span],
    each: &mut dyn FnMut(&Span, Result<Vec<u8>, StoreError>) -> bool,
) {
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
        for _ in 0..FETCHERS.min(spans.len()) {
            scope.spawn(|| loop {
                let i = {
                    let mut g = lock();
                    while !g.stop && g.next < spans.len() && g.next >= g.taken + WINDOW {
                        g = wait(g);
                    }
                    if g.stop || g.next >= spans.len() {
                        return;
                    }
                    g.next += 1;
                    g.next - 1
                };
                // A panic would leave the caller waiting for this span.
                let got =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fetch(b, &spans[i])))
                        .unwrap_or_else(|_| {
                            Err(StoreError::Io(std::io::Error::other(
                                "reading a pack panicked",
                            )))
                        });
                lock().done.insert(i, got);
                cv.notify_all();
            });
        }
        for (i, span) in spans.iter().enumerate() {
            let got = {
                let mut g = lock();
                loop {
                    if let Some(r) = g.done.remove(&i) {
                        g.taken = i + 1;
                        break r;
                    }
                    g = wait(g);
                }
            };
            cv.notify_all();
            if !each(span, got) {
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
    use crate::store::backend::local::LocalBackend;
    use crate::store::backend::Entry;
    use crate::store::pack::BlobKind;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A local repository whose ranged reads are counted.
    struct Counting(LocalBackend, AtomicUsize);

    impl Backend for Counting {
        fn name(&self, key: &str) -> std::path::PathBuf {
            self.0.name(key)
        }
        fn prepare(&self) -> Result<(), StoreError> {
            self.0.prepare()
        }
        fn read(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.0.read(key)
        }
        fn read_at(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.read_at(key, offset, buf)
        }
        fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.0.write(key, bytes)
        }
        fn create(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.0.create(key, bytes)
        }
        fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
            self.0.list(dir)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key)
        }
        fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
            self.0.size(key)
        }
    }

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
        let spans = plan(&store, &want);
        let parts: Vec<BlobId> = spans
            .iter()
            .flat_map(|s| s.parts.iter().map(|p| p.id))
            .collect();
        assert_eq!(parts, want.iter().map(|i| **i).collect::<Vec<_>>());
        assert!(spans.iter().all(|s| s.len <= SPAN_BYTES));
        // 30 MB of blobs in a few 8 MiB reads, plus the missing one.
        assert!(spans.len() <= packs * 3 + 1, "{} spans", spans.len());
        let b = Counting(LocalBackend::new(&d.path().join("r")), AtomicUsize::new(0));
        let mut got = Vec::new();
        fetch_ahead(&b, &spans, &mut |span, bytes| {
            let bytes = bytes.unwrap();
            for p in &span.parts {
                if span.pack.is_none() {
                    got.push(
                        store
                            .read_blob(&p.id)
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                    );
                    continue;
                }
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
        assert_eq!(b.1.load(Ordering::SeqCst), spans.len() - 1);
        // Stopping after the first span: the fetchers stop within the window.
        let b = Counting(LocalBackend::new(&d.path().join("r")), AtomicUsize::new(0));
        fetch_ahead(&b, &spans, &mut |_, _| false);
        assert!(b.1.load(Ordering::SeqCst) <= WINDOW + FETCHERS);
    }
}
