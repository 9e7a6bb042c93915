//! New blobs on their way into packs, in a pipeline: the caller hashes and
//! deduplicates; encoder threads compress and seal; a writer thread fills
//! packs, and a storer thread writes each durably while the next is being
//! filled. Nothing is visible to readers until [`PackSet::commit`] has
//! written the index naming the packs, after every one of them is on disk.

use std::collections::HashSet;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use super::backend::Backend;
use super::blob::{encode_with_id, Encoded};
use super::crypto::{BlobId, Cipher};
use super::index::{self, IndexFile, IndexedPack};
use super::pack::{BlobKind, PackId, PackWriter, PACK_SIZE};
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

/// What the pack writer thread returns: the packs it wrote, indexed, and
/// their bytes.
type Written = Result<(Vec<IndexedPack>, u64), StoreError>;

pub(crate) struct PackSet<'s> {
    store: &'s Store,
    pending: HashSet<BlobId, index::IdHash>,
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
fn writer(root: Arc<dyn Backend>, cipher: Cipher, rx: Receiver<Done>) -> Written {
    let (full_tx, full_rx) = sync_channel::<(PackWriter, PackId)>(0);
    let (empty_tx, empty_rx) = channel::<PackWriter>();
    let storer = thread::Builder::new()
        .name("pack-storer".into())
        .spawn(move || storer(root, full_rx, empty_tx))
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

/// Writes each sealed pack it is handed, and hands the emptied writer back.
fn storer(
    root: Arc<dyn Backend>,
    full: Receiver<(PackWriter, PackId)>,
    empty: Sender<PackWriter>,
) -> Result<(), StoreError> {
    for (mut w, id) in full {
        let stored = w.store_sealed(&*root, &id);
        w.reset();
        stored?;
        // The writer may have finished already; the buffer is then freed.
        let _ = empty.send(w);
    }
    Ok(())
}

fn fill(
    cipher: &Cipher,
    rx: Receiver<Done>,
    full: &SyncSender<(PackWriter, PackId)>,
    empty: &Receiver<PackWriter>,
) -> Written {
    let mut packs = Vec::new();
    let mut bytes = 0u64;
    let mut w = PackWriter::default();
    // Seals `w` and hands it over. The hand-over waits for the storer to
    // take it, which it does only after handing back the pack before:
    // from the second pack on, that buffer is the next one to fill.
    let mut hand_over = |mut w: PackWriter, packs: &mut Vec<IndexedPack>| {
        bytes += w.len() as u64;
        let (pack, blobs) = w.seal(cipher)?;
        if full.send((w, pack)).is_err() {
            return Err(StoreError::Corrupt("the pack storer stopped".into()));
        }
        packs.push(IndexedPack { pack, blobs });
        Ok(empty.try_recv().unwrap_or_default())
    };
    for done in rx {
        for (kind, e) in done? {
            w.add(kind, e);
            if w.len() >= PACK_SIZE {
                w = hand_over(w, &mut packs)?;
            }
        }
    }
    if !w.is_empty() {
        hand_over(w, &mut packs)?;
    }
    Ok((packs, bytes))
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
        let writer = thread::Builder::new()
            .name("pack-writer".into())
            .spawn(move || writer(root, cipher, done_rx))
            .ok();
        Self {
            store,
            pending: HashSet::default(),
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
        Ok(())
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

    /// Waits for every pack to be durable, then writes the index naming
    /// them; afterwards every added blob is readable. Returns the bytes
    /// written to packs.
    pub(crate) fn commit(mut self) -> Result<u64, StoreError> {
        self.send_batch()?;
        let (packs, bytes) = self.stop()?;
        if packs.is_empty() {
            return Ok(0);
        }
        let file = IndexFile { packs };
        let id = index::write_index(self.store.backend(), self.store.cipher(), &file)?;
        self.store
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(id, &file);
        Ok(bytes)
    }
}

impl Drop for PackSet<'_> {
    fn drop(&mut self) {
        // An abandoned set stops its threads; what they wrote stays
        // unreferenced until prune.
        let _ = self.stop();
    }
}
