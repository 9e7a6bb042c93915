//! Taking a backup stream into the repository: checked frame by frame as it
//! arrives, stored as received, indexed, and published only when complete.

use std::fs;
use std::io::{BufWriter, Read, Write};

use guest_runner::stream::{Event, StreamReader};

use super::item_index::IndexedItem;
use super::repository::{io_err, write_synced, RepoError, Repository};
use super::snapshot::{Snapshot, Warning};

/// Where a backup came from and what it selected.
pub struct Origin {
    pub source: String,
    pub includes: Vec<String>,
    pub plugin: String,
}

/// Copies everything read into a file as well.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Reads a whole stream from `input` into a new snapshot, staged but not yet
/// visible: the caller publishes it with [`Repository::publish`] once the
/// producer has also reported success, or drops it with
/// [`Repository::discard`]. On any error the staged files are removed.
pub fn ingest(repo: &Repository, input: impl Read, origin: &Origin) -> Result<Snapshot, RepoError> {
    let id = new_id();
    let tmp = repo.tmp_dir(&id);
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = ingest_into(repo, &id, input, origin);
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn ingest_into(
    repo: &Repository,
    id: &str,
    input: impl Read,
    origin: &Origin,
) -> Result<Snapshot, RepoError> {
    let tmp = repo.tmp_dir(id);
    let stream_path = tmp.join("stream");
    let file = fs::File::create(&stream_path).map_err(io_err(&stream_path))?;
    let mut reader = StreamReader::new(Tee {
        inner: input,
        copy: BufWriter::with_capacity(1 << 20, file),
    });
    let time = now();
    let mut snap = Snapshot {
        id: id.to_owned(),
        time,
        source: origin.source.clone(),
        plugin: String::new(),
        plugin_version: String::new(),
        includes: origin.includes.clone(),
        items: 0,
        bytes: 0,
        warnings: Vec::new(),
    };
    let mut items = Vec::new();
    let mut open: Option<IndexedItem> = None;
    loop {
        let at = reader.offset();
        match reader.next_event()? {
            None => break,
            Some(Event::Header(h)) => {
                if h.plugin != origin.plugin {
                    return Err(RepoError::Invalid(format!(
                        "the stream was made by plugin {:?}, not {:?}",
                        h.plugin, origin.plugin
                    )));
                }
                snap.plugin = h.plugin;
                snap.plugin_version = h.plugin_version;
            }
            Some(Event::Item(item)) => open = Some(IndexedItem { item, offset: at }),
            Some(Event::Data(_)) => {}
            Some(Event::ItemEnd(end)) => {
                if let Some(mut it) = open.take() {
                    if end.size > 0 || it.item.kind == guest_runner::stream::ItemKind::File {
                        // What was read, not what stat said before reading.
                        it.item.size = end.size;
                    }
                    snap.bytes += end.size;
                    items.push(it);
                }
            }
            Some(Event::ItemAbort(n)) | Some(Event::Warning(n)) => {
                open = None;
                snap.warnings.push(Warning {
                    id: n.id,
                    message: n.message,
                });
            }
            Some(Event::Trailer(_)) => {}
        }
    }
    let mut tee = reader.into_inner();
    tee.copy.flush().map_err(io_err(&stream_path))?;
    let file = tee.copy.into_inner().map_err(|e| RepoError::Io {
        path: stream_path.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(&stream_path))?;
    snap.items = items.len() as u64;
    write_synced(&tmp.join("items.json"), &to_json(&items))?;
    write_synced(&tmp.join("snapshot.json"), &to_json(&snap))?;
    Ok(snap)
}

/// Serializes the repository's own records, which cannot fail.
fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A new snapshot id: 16 hex digits from the time, the process and a counter.
fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.finalize().to_hex()[..16].to_string()
}
