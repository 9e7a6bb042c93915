//! Making a restore stream from a snapshot: the selected items with their
//! content read from the store, each chunk checked against its id.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use guest_runner::stream::{Header, ItemKind, ItemRecord, StreamWriter};

use crate::jobs::{Control, Progress};
use crate::store::crypto::BlobId;
use crate::store::snapshot::{SnapshotInfo, StoredItem};
use crate::store::Store;

/// Chunks read and decoded at once, while the previous batch is written.
const BATCH: usize = 8;

/// Reads `blobs` in order into `sink`: each batch is read and decoded (in
/// parallel) on another thread while the previous one is written here, so
/// that decryption and decompression overlap with the runner's writes.
/// Returns why the content is damaged, if it is (the sink got the part
/// before the damage); errors are the sink's.
fn read_content(
    store: &Store,
    blobs: &[BlobId],
    mut sink: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Option<String>> {
    use rayon::prelude::*;
    let decode = |batch: &[BlobId]| -> Vec<Result<Vec<u8>, String>> {
        let read = |b: &BlobId| store.read_blob(b).map_err(|e| e.to_string());
        if batch.len() == 1 {
            // A small file's one chunk: handing it to the pool and waiting
            // for it costs more than decoding it here.
            return vec![read(&batch[0])];
        }
        batch.par_iter().map(read).collect()
    };
    let mut batches = blobs.chunks(BATCH);
    let mut current = batches.next().map(decode);
    std::thread::scope(|scope| {
        while let Some(done) = current.take() {
            let next = batches.next().map(|b| scope.spawn(move || decode(b)));
            for data in done {
                match data {
                    Ok(d) => sink(&d)?,
                    // The next batch, if started, is dropped with the scope.
                    Err(why) => return Ok(Some(why)),
                }
            }
            current = match next {
                Some(h) => Some(
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a chunk reader panicked"))?,
                ),
                None => None,
            };
        }
        Ok(None)
    })
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

/// Writes a restore stream of `selected` (in backup order) to `out`. A hard
/// link whose first name is not selected becomes a plain file carrying that
/// content, so that it can be restored alone; `all` is searched for it. An
/// item whose data is damaged is aborted in the stream (the plugin removes
/// what it began) and the others still go.
pub(crate) fn write_restore_stream(
    store: &Store,
    snap: &SnapshotInfo,
    all: &[StoredItem],
    selected: &[StoredItem],
    out: impl Write,
    ctl: &Control<'_>,
) -> anyhow::Result<Sent> {
    let mut progress = Progress::default();
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    let by_id: HashMap<&str, &StoredItem> = all.iter().map(|i| (i.record.id.as_str(), i)).collect();
    let chosen: HashSet<&str> = selected.iter().map(|i| i.record.id.as_str()).collect();
    let header = Header {
        format: 1,
        plugin: snap.plugin.clone(),
        plugin_version: snap.plugin_version.clone(),
        created: snap.time,
    };
    let mut w = StreamWriter::new(out, &header)?;
    for it in selected {
        anyhow::ensure!(!ctl.cancelled(), "cancelled");
        progress.items += 1;
        progress.bytes += it.record.size;
        (ctl.progress)(&progress);
        let (record, content) = match it.record.kind {
            ItemKind::Hardlink => {
                let target = it.record.hardlink_target.as_deref().unwrap_or_default();
                if chosen.contains(target) {
                    (it.record.clone(), &it.content)
                } else {
                    let Some(t) = by_id.get(target) else {
                        // A dangling link fails this item only: the rest of
                        // the snapshot is still restored.
                        let why = format!(
                            "hard link {} names {target:?}, which the snapshot lacks",
                            it.record.id
                        );
                        tracing::warn!("{why}; not restored");
                        skipped.push((it.record.id.clone(), why));
                        continue;
                    };
                    (
                        ItemRecord {
                            id: it.record.id.clone(),
                            hardlink_target: None,
                            ..t.record.clone()
                        },
                        &t.content,
                    )
                }
            }
            _ => (it.record.clone(), &it.content),
        };
        w.begin_item(&record)?;
        let damage = read_content(store, content, |data| w.data(data).map_err(Into::into))?;
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
    let (_, totals) = w.finish()?;
    Ok(Sent {
        items: totals.items,
        failed,
        skipped,
    })
}
