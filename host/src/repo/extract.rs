//! Making a restore stream from a snapshot: the selected items with their
//! content read from the store, each chunk checked against its id.

use std::borrow::Cow;
use std::io::Write;

use guest_runner::stream::{Header, ItemKind, ItemRecord, StreamWriter};

use super::{is_at_or_below, Catalog};
use crate::jobs::{Control, Progress};
use crate::store::crypto::BlobId;
use crate::store::snapshot::{SnapshotInfo, StoredItem};
use crate::store::Store;

/// Most chunks decoded at once, in parallel, while earlier ones are written.
const BATCH: usize = 32;
/// Most plain bytes in one batch (a batch holds at least one chunk): with
/// the two batches queued, the one being decoded and the one being written,
/// at most about four times this is held.
const BATCH_BYTES: u64 = 2 << 20;
/// Batches decoded ahead of the writer.
const AHEAD: usize = 2;
/// Plain bytes of the chunks after the one being decoded that the backend
/// is told will be read ([`Store::will_read`]); told again, for as much
/// more, once half of them are decoded. A local repository then reads
/// them from the disk while earlier ones are decoded.
const HINT_BYTES: u64 = 32 << 20;

/// One chunk's plain bytes, or why it could not be read.
type Decoded = Result<Vec<u8>, String>;

/// Most memory the buffers given back by the writer may hold: about what
/// is in flight (the two batches queued, the one being decoded and the one
/// being written, each of `BATCH_BYTES` or one chunk more), so that once
/// the pipeline is full no chunk needs a fresh buffer. At 4 MiB, a restore
/// of 1 GiB of random data (chunks of about 1 MiB, each mapped afresh
/// above the mmap threshold) spent 11% of its samples in the kernel
/// zeroing new pages for `decode_into`; at 16 MiB, 0.8%. Same run, three
/// rounds each, alternated: 2.11-2.51 s against 1.72-2.06 s, with the
/// peak at 58 MiB against 64-68 MiB (restic's: 97-104 MiB).
const POOL_BYTES: usize = 16 << 20;

/// Buffers the writer is done with, for the decoder to fill again: fresh
/// ones for every chunk cost more in page faults than the decoding.
#[derive(Default)]
struct Pool(std::sync::Mutex<(Vec<Vec<u8>>, usize)>);

impl Pool {
    /// The smallest buffer held that fits `need` bytes, or a new empty one
    /// (which the decoder sizes): a buffer too small would only be
    /// replaced, and one far too large holds memory for nothing.
    fn take(&self, need: usize) -> Vec<u8> {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let best =
            p.0.iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= need)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
        let Some(i) = best else {
            return Vec::new();
        };
        let b = p.0.swap_remove(i);
        p.1 -= b.capacity();
        b
    }

    fn give(&self, b: Vec<u8>) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if p.1 + b.capacity() <= POOL_BYTES {
            p.1 += b.capacity();
            p.0.push(b);
        }
    }
}

/// Reads and decodes `blobs` (the content of every item, in stream order)
/// on this thread and the pool, sending them in order to `out` in batches.
/// Returns when everything is sent or the receiver is gone (the writer
/// stopped).
fn decode_ahead(
    store: &Store,
    blobs: &[&BlobId],
    buffers: &Pool,
    out: &std::sync::mpsc::SyncSender<Vec<Decoded>>,
) {
    use rayon::prelude::*;
    if store.backend().remote() {
        return decode_spans(store, blobs, buffers, out);
    }
    let read = |b: &&BlobId| {
        let mut plain = buffers.take(store.raw_len(b).unwrap_or(0) as usize);
        match store.read_blob_into(b, &mut plain) {
            Ok(()) => Ok(plain),
            Err(e) => Err(e.to_string()),
        }
    };
    let mut rest = blobs;
    // How many of `blobs` the backend was told will be read, and the plain
    // bytes of those not yet decoded.
    let (mut hinted, mut ahead) = (0, 0u64);
    while !rest.is_empty() {
        let done_before = blobs.len() - rest.len();
        if ahead < HINT_BYTES / 2 {
            let from = hinted.max(done_before);
            let mut to = from;
            while to < blobs.len() && ahead < HINT_BYTES {
                ahead += u64::from(store.raw_len(blobs[to]).unwrap_or(0));
                to += 1;
            }
            store.will_read(&blobs[from..to]);
            hinted = to;
        }
        // A batch: up to BATCH chunks and BATCH_BYTES, cut across items so
        // that the small files of a tree or the messages of a mailbox are
        // decoded many at a time.
        let mut n = 0;
        let mut bytes = 0u64;
        while n < rest.len() && n < BATCH && (n == 0 || bytes < BATCH_BYTES) {
            bytes += u64::from(store.raw_len(rest[n]).unwrap_or(0));
            n += 1;
        }
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        ahead = ahead.saturating_sub(bytes);
        let done: Vec<Decoded> = if batch.len() == 1 {
            // Handing one chunk to the pool and waiting costs more than
            // decoding it here.
            vec![read(&batch[0])]
        } else {
            batch.par_iter().map(read).collect()
        };
        if out.send(done).is_err() {
            return;
        }
    }
}

/// [`decode_ahead`] from a remote repository: neighbouring chunks of a
/// pack are fetched in one ranged read, several reads in flight
/// ([`crate::store::spans`]), and each batch's chunks are decoded in
/// parallel and sent together. A chunk whose bytes do not decode, or
/// whose read failed, is read again alone ([`Store::read_blob_into`]),
/// which tries its other copies and names what is wrong.
fn decode_spans(
    store: &Store,
    blobs: &[&BlobId],
    buffers: &Pool,
    out: &std::sync::mpsc::SyncSender<Vec<Decoded>>,
) {
    use crate::store::spans;
    use rayon::prelude::*;
    thread_local! {
        static SEALED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let alone = |id: &BlobId| {
        let mut plain = buffers.take(store.raw_len(id).unwrap_or(0) as usize);
        match store.read_blob_into(id, &mut plain) {
            Ok(()) => Ok(plain),
            Err(e) => Err(e.to_string()),
        }
    };
    let plan = spans::plan(store, blobs);
    spans::fetch_ahead(store.backend(), &plan, &mut |batch, bytes| {
        let decode = |p: &spans::Part| -> Decoded {
            let Some(Ok(bytes)) = p.range.map(|r| &bytes[r]) else {
                return alone(&p.id);
            };
            let Some(stored) = bytes.get(p.at..p.at + p.len as usize) else {
                return alone(&p.id);
            };
            let mut plain = buffers.take(p.raw_len as usize);
            let opened = SEALED.with_borrow_mut(|sealed| {
                // Copied out: a chunk repeated in the batch is opened again.
                sealed.clear();
                sealed.extend_from_slice(stored);
                store.open_blob(&p.id, p.raw_len, sealed, &mut plain)
            });
            match opened {
                Ok(()) => Ok(plain),
                Err(_) => {
                    buffers.give(plain);
                    alone(&p.id)
                }
            }
        };
        let done: Vec<Decoded> = if batch.parts.len() == 1 {
            vec![decode(&batch.parts[0])]
        } else {
            batch.parts.par_iter().map(decode).collect()
        };
        out.send(done).is_ok()
    });
}

/// Items sent, and items that could not be (damaged data), with the reason.
pub(crate) struct Sent {
    pub items: u64,
    /// Items whose data could not be sent (damaged): the restore fails.
    pub failed: Vec<(String, String)>,
    /// Items the snapshot itself cannot restore (a hard link whose first
    /// name it lacks): left out with a warning, the rest is restored.
    pub skipped: Vec<(String, String)>,
}

/// Most items in one segment of a restore: the stream is planned, read
/// and written a segment at a time, so that what a restore holds does not
/// grow with the snapshot (issue 12: a million-file restore held its whole
/// item list, 659 MiB at its peak).
const SEGMENT_ITEMS: usize = 4096;
/// Most chunks in one segment (a segment holds at least one item).
const SEGMENT_CHUNKS: usize = 1 << 16;

/// Items to send, in stream order: each with, for a hard link whose first
/// name is not restored, the item it names (sent as a plain file).
type Segment = Vec<(StoredItem, Option<StoredItem>)>;

/// Writes a restore stream of the items of `snap` at or below one of
/// `wanted` (all when none is), in backup order, to `out`. The items are
/// read from `catalog` (a reader of its own, on a thread of its own) a
/// segment at a time while earlier ones are written. A hard link whose
/// first name is not restored becomes a plain file carrying that content,
/// so that it can be restored alone. An item whose data is damaged is
/// aborted in the stream (the plugin removes what it began) and the others
/// still go.
pub(crate) fn write_restore_stream(
    store: &Store,
    catalog: Catalog,
    snap: &SnapshotInfo,
    wanted: &[String],
    out: impl Write,
    ctl: &Control<'_>,
) -> anyhow::Result<Sent> {
    let mut progress = Progress::default();
    let mut failed = Vec::new();
    let header = Header {
        format: 1,
        plugin: snap.plugin.clone(),
        plugin_version: snap.plugin_version.clone(),
        created: snap.time,
    };
    let mut w = StreamWriter::new(out, &header)?;
    let buffers = Pool::default();
    let skipped = std::thread::scope(|scope| -> anyhow::Result<_> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Segment>(1);
        let planner = scope.spawn(move || plan_segments(&catalog, &snap.id, wanted, &tx));
        let mut written = Ok(());
        for segment in &rx {
            written = write_segment(
                store,
                &mut w,
                &segment,
                &buffers,
                &mut progress,
                &mut failed,
                ctl,
            );
            if written.is_err() {
                break;
            }
        }
        // A writer that stopped drops the receiver, which stops the planner
        // at its next segment.
        drop(rx);
        let planned = planner
            .join()
            .map_err(|_| anyhow::anyhow!("the restore planner panicked"))?;
        written?;
        planned
    })?;
    let (_, totals) = w.finish()?;
    Ok(Sent {
        items: totals.items,
        failed,
        skipped,
    })
}

/// Reads the items of `snapshot` selected by `wanted` from `catalog` and
/// sends them to `tx` in segments; returns the hard links left out (whose
/// first name the snapshot lacks), with why. Stops early, without error,
/// when the receiver is gone.
fn plan_segments(
    catalog: &Catalog,
    snapshot: &str,
    wanted: &[String],
    tx: &std::sync::mpsc::SyncSender<Segment>,
) -> anyhow::Result<Vec<(String, String)>> {
    let selected = |id: &str| wanted.is_empty() || wanted.iter().any(|w| is_at_or_below(id, w));
    // With one wanted item, only the catalog's chunks that hold it and
    // what lies below it are read.
    let below = match wanted {
        [w] => Some(w.as_str()),
        _ => None,
    };
    let mut skipped = Vec::new();
    let mut segment: Segment = Vec::new();
    let mut chunks = 0usize;
    let mut gone = false;
    let read = catalog.each_chunk(snapshot, below, &mut |items| {
        for it in items {
            if !selected(&it.record.id) {
                continue;
            }
            let mut as_file_of = None;
            if it.record.kind == ItemKind::Hardlink {
                let target = it.record.hardlink_target.as_deref().unwrap_or_default();
                // A target restored too is linked to; one that is not is
                // sent in the link's place. Either must be in the snapshot.
                let found = if selected(target) {
                    catalog.has_item(snapshot, target)?
                } else {
                    as_file_of = catalog.records(snapshot, &[target])?.pop();
                    as_file_of.is_some()
                };
                if !found {
                    // A dangling link fails this item only: the rest of
                    // the snapshot is still restored.
                    let why = format!(
                        "hard link {} names {target:?}, which the snapshot lacks",
                        it.record.id
                    );
                    tracing::warn!("{why}; not restored");
                    skipped.push((it.record.id.clone(), why));
                    continue;
                }
            }
            chunks += as_file_of.as_ref().unwrap_or(&it).content.len();
            segment.push((it, as_file_of));
            if segment.len() >= SEGMENT_ITEMS || chunks >= SEGMENT_CHUNKS {
                chunks = 0;
                if tx.send(std::mem::take(&mut segment)).is_err() {
                    gone = true;
                    anyhow::bail!("the stream writer stopped");
                }
            }
        }
        Ok(())
    });
    if gone {
        return Ok(skipped);
    }
    read?;
    if !segment.is_empty() {
        // A writer that stopped has its own error.
        let _ = tx.send(segment);
    }
    Ok(skipped)
}

/// Writes the items of `segment` to `w`, their chunks read and decoded
/// ahead, in parallel, while earlier ones are written.
fn write_segment<W: Write>(
    store: &Store,
    w: &mut StreamWriter<W>,
    segment: &Segment,
    buffers: &Pool,
    progress: &mut Progress,
    failed: &mut Vec<(String, String)>,
    ctl: &Control<'_>,
) -> anyhow::Result<()> {
    // Records are borrowed, also for a hard link sent as a plain file: its
    // record is made as it is written. An owned record for every item was
    // 200 bytes each, 9.9 MB of a 47,602-item restore's peak (issue 12).
    let plan: Vec<Planned<'_>> = segment
        .iter()
        .map(|(it, as_file_of)| Planned {
            record: &it.record,
            as_file_of: as_file_of.as_ref().map(|t| &t.record),
            content: &as_file_of.as_ref().unwrap_or(it).content,
            size: it.record.size,
        })
        .collect();
    let blobs: Vec<&BlobId> = plan.iter().flat_map(|p| p.content.iter()).collect();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(AHEAD);
        let blobs = &blobs;
        let decoder = scope.spawn(move || decode_ahead(store, blobs, buffers, &tx));
        // The decoded chunks, in order; when the writer stops early, the
        // receiver is dropped, which stops the decoder at its next batch.
        let mut chunks = rx.into_iter().flatten();
        let written = write_items(w, &plan, &mut chunks, buffers, progress, failed, ctl);
        drop(chunks);
        decoder
            .join()
            .map_err(|_| anyhow::anyhow!("the chunk reader panicked"))?;
        written
    })
}

/// One item of a restore stream: its record and content, or, for a hard
/// link whose first name is not restored, the record and content of the
/// item it names, sent under the link's own id as a plain file.
struct Planned<'a> {
    record: &'a ItemRecord,
    as_file_of: Option<&'a ItemRecord>,
    content: &'a [BlobId],
    size: u64,
}

impl Planned<'_> {
    /// The record the stream carries.
    fn sent(&self) -> Cow<'_, ItemRecord> {
        match self.as_file_of {
            None => Cow::Borrowed(self.record),
            Some(target) => Cow::Owned(ItemRecord {
                id: self.record.id.clone(),
                hardlink_target: None,
                ..target.clone()
            }),
        }
    }
}

/// Writes the items of `plan` to `w`, their content taken in order from
/// `chunks`; an item whose chunk is damaged is aborted (and listed in
/// `failed`), the others still go.
fn write_items<W: Write>(
    w: &mut StreamWriter<W>,
    plan: &[Planned<'_>],
    chunks: &mut impl Iterator<Item = Decoded>,
    buffers: &Pool,
    progress: &mut Progress,
    failed: &mut Vec<(String, String)>,
    ctl: &Control<'_>,
) -> anyhow::Result<()> {
    for p in plan {
        anyhow::ensure!(!ctl.cancelled(), "cancelled");
        progress.items += 1;
        progress.bytes += p.size;
        (ctl.progress)(progress);
        let record = p.sent();
        w.begin_item(&record)?;
        let mut damage = None;
        for _ in 0..p.content.len() {
            let data = chunks
                .next()
                .ok_or_else(|| anyhow::anyhow!("the chunk reader stopped early"))?;
            // After damage, the item's remaining chunks are dropped.
            match (data, &damage) {
                (Ok(d), None) => {
                    w.data(&d)?;
                    buffers.give(d);
                }
                (Err(why), None) => damage = Some(why),
                (_, Some(_)) => {}
            }
        }
        match damage {
            None => {
                w.end_item()?;
            }
            Some(why) => {
                w.abort_item(&record.id, &why)?;
                failed.push((record.id.clone(), why));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool hands out the smallest buffer that fits, none when none
    /// does (the decoder then sizes a new one), and never holds more than
    /// its bound.
    #[test]
    fn the_pool_hands_out_the_smallest_buffer_that_fits() {
        let pool = Pool::default();
        for cap in [1 << 20, 64 << 10, 256 << 10] {
            pool.give(Vec::with_capacity(cap));
        }
        assert_eq!(pool.take(100 << 10).capacity(), 256 << 10);
        assert_eq!(pool.take(2 << 20).capacity(), 0, "none fits");
        assert_eq!(pool.take(1).capacity(), 64 << 10);
        assert_eq!(pool.take(1).capacity(), 1 << 20);
        assert_eq!(pool.take(1).capacity(), 0, "empty");
        for _ in 0..POOL_BYTES / (1 << 20) + 3 {
            pool.give(Vec::with_capacity(1 << 20));
        }
        let held = pool.0.lock().unwrap();
        assert_eq!(held.1, POOL_BYTES);
        assert_eq!(held.0.iter().map(Vec::capacity).sum::<usize>(), POOL_BYTES);
    }

    fn item(id: &str, kind: ItemKind, link: Option<&str>) -> StoredItem {
        StoredItem {
            record: ItemRecord {
                hardlink_target: link.map(str::to_owned),
                ..ItemRecord::new(id, kind, 0)
            },
            content: Vec::new(),
        }
    }

    /// Each item sent: its id, and the id of the file it is sent as.
    type Sends = Vec<(String, Option<String>)>;

    /// What `plan_segments` sends for `wanted`: the segments' items (with
    /// the id of what each is sent as), and the links left out.
    fn planned(cat: &Catalog, wanted: &[&str]) -> (Vec<Sends>, Vec<String>) {
        let wanted: Vec<String> = wanted.iter().map(|w| (*w).to_owned()).collect();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Segment>(1);
        std::thread::scope(|s| {
            let reader = cat.reader().unwrap();
            let wanted = &wanted;
            let planner = s.spawn(move || plan_segments(&reader, "s1", wanted, &tx));
            let got: Vec<_> = rx
                .iter()
                .map(|seg| {
                    seg.into_iter()
                        .map(|(i, f)| (i.record.id, f.map(|f| f.record.id)))
                        .collect()
                })
                .collect();
            let skipped = planner.join().unwrap().unwrap();
            (got, skipped.into_iter().map(|(id, _)| id).collect())
        })
    }

    /// A restore is planned from the catalog in segments of at most
    /// SEGMENT_ITEMS items, in backup order, without the whole list: a
    /// hard link whose first name is restored too is linked, one whose
    /// first name is not is sent as that file, and one whose first name
    /// the snapshot lacks is left out.
    #[test]
    fn a_restore_is_planned_in_bounded_segments_in_backup_order() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        let snap: SnapshotInfo = serde_json::from_value(serde_json::json!({
            "id": "s1", "time": 1, "source": "local", "plugin": "filesystem",
            "plugin_version": "1", "includes": ["/t"], "items": 0, "bytes": 0,
            "added_bytes": 0, "read_bytes": 0, "warnings": [], "tree": []
        }))
        .unwrap();
        let mut items = vec![item("/t", ItemKind::Directory, None)];
        for d in 0..10 {
            items.push(item(&format!("/t/d{d}"), ItemKind::Directory, None));
            for f in 0..1000 {
                items.push(item(&format!("/t/d{d}/f{f}"), ItemKind::File, None));
            }
        }
        items.push(item("/t/z", ItemKind::Directory, None));
        items.push(item("/t/z/link", ItemKind::Hardlink, Some("/t/d0/f0")));
        items.push(item("/t/z/dangling", ItemKind::Hardlink, Some("/t/none")));
        cat.add(&snap, &items).unwrap();

        let (segments, skipped) = planned(&cat, &[]);
        assert!(segments.len() > 1, "{} segments", segments.len());
        assert!(segments
            .iter()
            .all(|s| !s.is_empty() && s.len() <= SEGMENT_ITEMS));
        let sent: Vec<_> = segments.into_iter().flatten().collect();
        let want: Vec<_> = items
            .iter()
            .map(|i| (i.record.id.clone(), None))
            .filter(|(id, _)| id != "/t/z/dangling")
            .collect();
        assert_eq!(
            sent, want,
            "every item but the dangling link, in order, linked"
        );
        assert_eq!(skipped, ["/t/z/dangling"]);

        let (segments, skipped) = planned(&cat, &["/t/z"]);
        assert_eq!(
            segments.concat(),
            [
                ("/t/z".to_owned(), None),
                ("/t/z/link".to_owned(), Some("/t/d0/f0".to_owned())),
            ],
            "the link alone is sent as the file it names"
        );
        assert_eq!(skipped, ["/t/z/dangling"]);

        let (segments, _) = planned(&cat, &["/t/d3/f7", "/t/z/link"]);
        assert_eq!(
            segments.concat(),
            [
                ("/t/d3/f7".to_owned(), None),
                ("/t/z/link".to_owned(), Some("/t/d0/f0".to_owned())),
            ]
        );
    }
}
