//! New blobs on their way into packs, in a pipeline: the caller hashes and
//! deduplicates; encoder threads compress and seal; a writer thread fills
//! packs, and a storer thread writes each durably while the next is being
//! filled. When a durable pack would take the durable packs not yet
//! indexed past [`index::FILE_BLOBS`] blobs, the storer first writes an
//! index file naming those, and the caller adds it to the
//! repository's index and forgets those blobs as pending: the memory of a
//! backup's blobs in flight no longer grows with its number of files. A
//! blob is indexed only after its pack is on disk, and
//! [`PackSet::commit`] returns once every pack is indexed.

use std::collections::HashSet;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use super::backend::Backend;
use super::blob::{encode_with_id, Encoded};
use super::crypto::{BlobId, Cipher};
use super::index::{self, IndexBatch, IndexFile, IndexedPack};
use super::pack::{BlobKind, PackId, PackWriter, PackedBlob, PACK_SIZE};
use super::{Store, StoreError};

/// Chunks handed to an encoder together, and what it makes of them.
type Job = Vec<(BlobKind, BlobId, Vec<u8>)>;
type Done = Result<Vec<(BlobKind, Encoded)>, StoreError>;

/// Batches waiting for an encoder, and encoded batches waiting for the
/// writer: bounds the memory in flight to a few batches each.
const QUEUE: usize = 4;
/// A batch is sent once it holds this many plain bytes or [`BATCH_BLOBS`]
/// chunks (a larger chunk goes alone). Each hand-over wakes a thread: one
/// per chunk, the small files of a source tree cost more in wake-ups and
/// switches than in encoding (issue 12).
const BATCH_BYTES: usize = 512 << 10;
const BATCH_BLOBS: usize = 64;

/// What the pack writer thread returns: the bytes of the packs it wrote.
type Written = Result<u64, StoreError>;

/// An index file written while the set runs, and what it lists.
type Indexed = (BlobId, IndexFile);

pub(crate) struct PackSet<'s> {
    store: &'s Store,
    /// Blobs added and not indexed yet.
    pending: HashSet<BlobId, index::IdHash>,
    /// Index files the storer wrote, to add to the repository's index.
    indexed: Receiver<Indexed>,
    jobs: Option<SyncSender<Job>>,
    /// Chunks not sent yet, and their bytes.
    batch: Job,
    batch_bytes: usize,
    encoders: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<Written>>,
}

fn encoder(cipher: Cipher, jobs: Arc<Mutex<Receiver<Job>>>, out: SyncSender<Done>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(batch) = job else { return };
        let done: Done = batch
            .into_iter()
            .map(|(kind, id, plain)| encode_with_id(&cipher, id, &plain).map(|e| (kind, e)))
            .collect();
        let failed = done.is_err();
        if out.send(done).is_err() || failed {
            return;
        }
    }
}

/// Fills packs from the encoders. A full pack is sealed and handed to the
/// [`storer`] thread, which writes it durably while this one fills the
/// next: writing and `fsync` no longer stall the pipeline (issue 12). Two
/// pack buffers take turns, so no more than one pack waits to be written.
fn writer(
    root: Arc<dyn Backend>,
    cipher: Cipher,
    rx: Receiver<Done>,
    indexed: Sender<Indexed>,
) -> Written {
    let (full_tx, full_rx) = sync_channel::<Sealed>(0);
    let (empty_tx, empty_rx) = channel::<PackWriter>();
    let index_cipher = cipher.clone();
    let storer = thread::Builder::new()
        .name("pack-storer".into())
        .spawn(move || storer(root, index_cipher, full_rx, empty_tx, indexed))
        .map_err(StoreError::Io)?;
    let filled = fill(&cipher, rx, &full_tx, &empty_rx);
    drop(full_tx);
    let stored = match storer.join() {
        Ok(r) => r,
        Err(_) => Err(StoreError::Corrupt("the pack storer panicked".into())),
    };
    // The storer's error is the first cause when both failed: filling
    // stops once the storer is gone.
    stored?;
    filled
}

/// A sealed pack: its buffer, id and blobs.
type Sealed = (PackWriter, PackId, Vec<PackedBlob>);

/// Writes each sealed pack it is handed, and hands the emptied writer
/// back. Indexes the durable packs in files of at most
/// [`index::FILE_BLOBS`] blobs ([`IndexBatch`]) as they fill, and the rest
/// at the end.
fn storer(
    root: Arc<dyn Backend>,
    cipher: Cipher,
    full: Receiver<Sealed>,
    empty: Sender<PackWriter>,
    indexed: Sender<Indexed>,
) -> Result<(), StoreError> {
    let mut durable = IndexBatch::default();
    for (mut w, pack, list) in full {
        let stored = w.store_sealed(&*root, &pack);
        w.reset();
        stored?;
        // The writer may have finished already; the buffer is then freed.
        let _ = empty.send(w);
        if let Some(file) = durable.push(IndexedPack { pack, blobs: list }) {
            write_index(&*root, &cipher, file, &indexed)?;
        }
    }
    write_index(&*root, &cipher, durable.rest(), &indexed)
}

/// Writes an index file of durable packs, unless there are none, and hands
/// it to the set.
fn write_index(
    root: &dyn Backend,
    cipher: &Cipher,
    file: IndexFile,
    indexed: &Sender<Indexed>,
) -> Result<(), StoreError> {
    if file.packs.is_empty() {
        return Ok(());
    }
    let id = index::write_index(root, cipher, &file)?;
    // The set may be gone (dropped on an error); the file stays, naming
    // durable packs.
    let _ = indexed.send((id, file));
    Ok(())
}

fn fill(
    cipher: &Cipher,
    rx: Receiver<Done>,
    full: &SyncSender<Sealed>,
    empty: &Receiver<PackWriter>,
) -> Written {
    let mut bytes = 0u64;
    let mut w = PackWriter::default();
    // Seals `w` and hands it over. The hand-over waits for the storer to
    // take it, which it does only after handing back the pack before:
    // from the second pack on, that buffer is the next one to fill.
    let mut hand_over = |mut w: PackWriter| {
        bytes += w.len() as u64;
        let (pack, blobs) = w.seal(cipher)?;
        if full.send((w, pack, blobs)).is_err() {
            return Err(StoreError::Corrupt("the pack storer stopped".into()));
        }
        Ok(empty.try_recv().unwrap_or_default())
    };
    for done in rx {
        for (kind, e) in done? {
            w.add(kind, e);
            if w.len() >= PACK_SIZE {
                w = hand_over(w)?;
            }
        }
    }
    if !w.is_empty() {
        hand_over(w)?;
    }
    Ok(bytes)
}

impl<'s> PackSet<'s> {
    pub(crate) fn new(store: &'s Store) -> Self {
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(QUEUE);
        let (done_tx, done_rx) = sync_channel::<Done>(QUEUE);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let n = thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let encoders = (0..n)
            .filter_map(|i| {
                let (cipher, jobs, out) =
                    (store.cipher().clone(), jobs_rx.clone(), done_tx.clone());
                thread::Builder::new()
                    .name(format!("encode-{i}"))
                    .spawn(move || encoder(cipher, jobs, out))
                    .ok()
            })
            .collect();
        drop(done_tx);
        let (root, cipher) = (store.backend_arc(), store.cipher().clone());
        let (indexed_tx, indexed) = channel();
        let writer = thread::Builder::new()
            .name("pack-writer".into())
            .spawn(move || writer(root, cipher, done_rx, indexed_tx))
            .ok();
        Self {
            store,
            pending: HashSet::default(),
            indexed,
            jobs: Some(jobs_tx),
            batch: Vec::new(),
            batch_bytes: 0,
            encoders,
            writer,
        }
    }

    /// Whether a blob is stored already or on its way.
    pub(crate) fn contains(&self, id: &BlobId) -> bool {
        self.pending.contains(id) || self.store.has(id)
    }

    /// Stores `plain` unless a blob with its content exists; returns its id.
    pub(crate) fn add(&mut self, kind: BlobKind, plain: &[u8]) -> Result<BlobId, StoreError> {
        let id = self.store.cipher().id(plain);
        if self.contains(&id) {
            return Ok(id);
        }
        self.pending.insert(id);
        self.batch.push((kind, id, plain.to_vec()));
        self.batch_bytes += plain.len();
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_BLOBS {
            self.send_batch()?;
        }
        Ok(id)
    }

    /// Sends the chunks gathered so far to the encoders.
    fn send_batch(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(batch).is_ok());
        if !sent {
            // The pipeline stopped: its own error says why.
            return Err(self
                .stop()
                .err()
                .unwrap_or_else(|| StoreError::Corrupt("the pack writer stopped".into())));
        }
        self.take_indexed();
        Ok(())
    }

    /// Adds the index files written so far to the repository's index, and
    /// forgets their blobs as pending (they are found there now).
    fn take_indexed(&mut self) {
        for (id, file) in self.indexed.try_iter() {
            self.store
                .index
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .add(id, &file);
            for b in file.packs.iter().flat_map(|p| &p.blobs) {
                self.pending.remove(&b.id);
            }
        }
    }

    /// Drains the pipeline and returns the packs written.
    fn stop(&mut self) -> Written {
        drop(self.jobs.take());
        for e in self.encoders.drain(..) {
            let _ = e.join();
        }
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StoreError::Corrupt("the pack writer panicked".into())),
            None => Err(StoreError::Corrupt("the pack writer did not start".into())),
        }
    }

    /// Waits for every pack to be durable and indexed; afterwards every
    /// added blob is readable. Returns the bytes written to packs.
    pub(crate) fn commit(mut self) -> Result<u64, StoreError> {
        self.send_batch()?;
        let bytes = self.stop()?;
        self.take_indexed();
        Ok(bytes)
    }
}

impl Drop for PackSet<'_> {
    fn drop(&mut self) {
        // An abandoned set stops its threads; the packs they made durable
        // are indexed, and stay unreferenced until prune.
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypto;

    /// A set of many blobs indexes its packs in files of about
    /// [`index::FILE_BLOBS`] blobs as they become durable; the set holds
    /// as pending only what is not indexed yet; and a set dropped without
    /// commit (a failed or killed backup) has still indexed what it stored,
    /// so a repository opened afterwards has every blob.
    #[test]
    fn packs_are_indexed_in_bounded_files_as_they_become_durable() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("r");
        let store = Store::init(&root, Some("pw")).unwrap();
        // Incompressible 1 KiB blobs: about 8,000 to a pack.
        let n = 4 * index::FILE_BLOBS;
        let mut data = vec![0u8; 1024 + n];
        crypto::random(&mut data).unwrap();
        let blob = |i: usize| &data[i..i + 1024];
        let mut ids = Vec::new();
        let mut set = store.writer();
        let mut least_pending = usize::MAX;
        for i in 0..n {
            ids.push(set.add(BlobKind::Data, blob(i)).unwrap());
            if i > 3 * index::FILE_BLOBS / 2 {
                least_pending = least_pending.min(set.pending.len());
            }
        }
        // Right after an index file is taken, only the blobs still in
        // flight (two packs and the queues) are pending.
        assert!(
            least_pending < index::FILE_BLOBS,
            "indexed blobs are no longer pending: {least_pending} of {n}"
        );
        assert!(ids.iter().all(|id| set.contains(id)));
        drop(set);

        let files = std::fs::read_dir(root.join("index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>();
        assert!(files.len() >= 3, "{} index files", files.len());
        let mut listed = 0;
        for f in &files {
            let file = index::decode(store.cipher(), &std::fs::read(f).unwrap(), "index").unwrap();
            let blobs: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
            assert!(
                blobs <= index::FILE_BLOBS || file.packs.len() == 1,
                "{blobs} blobs in one file"
            );
            listed += blobs;
        }
        assert_eq!(listed, n, "each blob indexed once");
        let again = Store::open(&root, Some("pw")).unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert!(again.has(id), "blob {i} indexed");
        }
        assert_eq!(again.read_blob(&ids[n - 1]).unwrap(), blob(n - 1));
    }
}
