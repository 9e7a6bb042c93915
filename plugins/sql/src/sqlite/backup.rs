//! Backup of an SQLite database another process may be writing, by an
//! optimistic protocol (README: "SQLite copy protocol"): observe the file's
//! state, copy, observe again; if a writer or a checkpoint may have changed
//! what was copied, the copy is dropped and taken again.

use super::files::{self, io};
use super::format::{
    scan_wal, DbHeader, ReadAt, ShmState, Trailer, HEADER_LEN, SHM_READ_LEN, WAL_HEADER_LEN,
};
use crate::metadata::item_metadata;
use attache_plugin_sdk::host::{log, progress};
use attache_plugin_sdk::posix;
use attache_plugin_sdk::sink::{self as backup_sink, Writer as ItemWriter};
use attache_plugin_sdk::wasi::filesystem::types::Descriptor;
use attache_plugin_sdk::Summary;
use attache_plugin_sdk::{Item, ItemKind, Level, PluginError};

/// Copies taken before giving up on a database that never holds still.
const MAX_ATTEMPTS: u32 = 100;
/// Databases (with their WAL) up to this size are copied into memory
/// first and emitted only once the copy checks out, so that a retry leaves
/// nothing in the stream; larger ones stream straight into the item, and a
/// copy that does not check out is aborted there.
const IN_MEMORY: u64 = 64 << 20;
/// After a first attempt that did not check out, databases up to this
/// size are copied into memory when the plugin's memory limit lets it
/// (else they stream again). Each streamed attempt that fails writes the
/// whole database into the stream for nothing: on a loaded machine, the
/// 80 MiB test database under a writer that never pauses failed 100
/// attempts in a row (CI), each slower than the last as the stream's
/// dirty pages piled up, where a copy in memory takes a fraction of the
/// time between two restarts of the WAL.
const RETRY_IN_MEMORY: u64 = 256 << 20;
/// Pieces in which memory copies are read and written.
const PIECE: u64 = 1 << 20;

/// The first bytes of a rollback journal's header.
const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

enum Outcome {
    /// The item is in the stream, with this many bytes.
    Done(u64),
    /// Nothing usable was copied; try again.
    Retry(Retry),
}

/// Why a copy was dropped, and when to take the next one.
struct Retry {
    why: String,
    wait: Wait,
}

/// When the next copy starts.
#[derive(Clone, Copy)]
enum Wait {
    /// Right after the WAL's next restart: the log moved under the copy,
    /// and the most time without a restart lies just after one.
    Restart,
    /// After a short pause that grows with the attempts (a writer held
    /// the file).
    Backoff,
}

impl Retry {
    fn after_restart(why: impl Into<String>) -> Self {
        Retry {
            why: why.into(),
            wait: Wait::Restart,
        }
    }

    fn after_backoff(why: impl Into<String>) -> Self {
        Retry {
            why: why.into(),
            wait: Wait::Backoff,
        }
    }
}

pub(crate) fn backup(path: &str, summary: &mut Summary) -> Result<(), PluginError> {
    let id = format!("sqlite://{path}");
    let (dir, name) = files::parent_of(path, false)?;
    let mut last = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let in_memory = if attempt == 1 {
            IN_MEMORY
        } else {
            RETRY_IN_MEMORY
        };
        match copy(&dir, &name, &id, attempt, in_memory)? {
            Outcome::Done(bytes) => {
                summary.items += 1;
                summary.bytes += bytes;
                progress(summary.items, summary.bytes, None, None);
                return Ok(());
            }
            Outcome::Retry(Retry { why, wait }) => {
                log(
                    Level::Debug,
                    &format!("{id}: attempt {attempt}: {why}; copying again"),
                );
                match wait {
                    Wait::Restart => {
                        await_restart(&dir, &name, std::time::Duration::from_millis(1000))?
                    }
                    Wait::Backoff => {
                        let ms = (5 * attempt as u64).min(100);
                        std::thread::sleep(std::time::Duration::from_millis(ms));
                    }
                }
                last = why;
            }
        }
    }
    Err(PluginError::Application(format!(
        "{id}: the database never held still for a consistent copy in {MAX_ATTEMPTS} attempts (last: {last})"
    )))
}

/// Waits until the WAL restarts (its salts in the wal-index change), or
/// `limit` passes.
fn await_restart(
    dir: &Descriptor,
    name: &str,
    limit: std::time::Duration,
) -> Result<(), PluginError> {
    let shm_name = format!("{name}-shm");
    let salt = |dir: &Descriptor| -> Result<Option<(u32, u32)>, PluginError> {
        Ok(
            match files::open_read(dir, &shm_name).map_err(|e| io(name, e))? {
                None => None,
                Some(s) => {
                    ShmState::parse(&s.read_at(0, SHM_READ_LEN).map_err(PluginError::Other)?)
                        .map(|s| s.salt)
                }
            },
        )
    };
    let start = std::time::Instant::now();
    let first = salt(dir)?;
    while start.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_micros(500));
        let now = salt(dir)?;
        if now.is_some() && now != first {
            break;
        }
    }
    Ok(())
}

/// What a reader can see of a database's state without locks.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    header: Vec<u8>,
    size: u64,
    hot_journal: bool,
    /// The WAL's 32-byte header (empty without a WAL): its salts change
    /// when the log restarts.
    wal_head: Vec<u8>,
    shm: Option<ShmState>,
}

fn look(dir: &Descriptor, name: &str, db: &Descriptor) -> Result<Seen, PluginError> {
    let size = db.stat().map_err(|e| io(name, e))?.size;
    let header = db
        .read_at(0, HEADER_LEN as u64)
        .map_err(PluginError::Other)?;
    let hot_journal =
        match files::open_read(dir, &format!("{name}-journal")).map_err(|e| io(name, e))? {
            None => false,
            Some(j) => j.read_at(0, 8).map_err(PluginError::Other)? == JOURNAL_MAGIC,
        };
    let wal_head = match files::open_read(dir, &format!("{name}-wal")).map_err(|e| io(name, e))? {
        None => Vec::new(),
        Some(w) => w.read_at(0, WAL_HEADER_LEN).map_err(PluginError::Other)?,
    };
    let shm = match files::open_read(dir, &format!("{name}-shm")).map_err(|e| io(name, e))? {
        None => None,
        Some(s) => ShmState::parse(&s.read_at(0, SHM_READ_LEN).map_err(PluginError::Other)?),
    };
    Ok(Seen {
        header,
        size,
        hot_journal,
        wal_head,
        shm,
    })
}

/// Where a copy goes: memory (emitted once it checks out) or the stream.
enum Dest {
    Memory(Vec<u8>),
    Stream(ItemWriter),
}

impl Dest {
    /// Appends `len` bytes of `fd` from offset 0; returns how many there were.
    fn append(&mut self, fd: &Descriptor, len: u64) -> Result<u64, PluginError> {
        match self {
            Dest::Stream(w) => w.write_file(fd, 0, len),
            Dest::Memory(buf) => {
                let mut done = 0;
                while done < len {
                    let piece = fd
                        .read_at(done, PIECE.min(len - done))
                        .map_err(PluginError::Other)?;
                    if piece.is_empty() {
                        break;
                    }
                    done += piece.len() as u64;
                    // More than was reserved (the WAL grew since its
                    // stat): grown by exactly what is needed, or an error
                    // instead of an abort past the memory limit.
                    buf.try_reserve_exact(piece.len()).map_err(|_| {
                        PluginError::Other(format!(
                            "out of memory copying the database ({} bytes so far)",
                            buf.len()
                        ))
                    })?;
                    buf.extend_from_slice(&piece);
                }
                Ok(done)
            }
        }
    }

    fn append_bytes(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        match self {
            Dest::Stream(w) => w.write(bytes),
            Dest::Memory(buf) => {
                buf.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

/// One attempt at a copy; databases (with their WAL) up to `in_memory`
/// bytes are copied into memory first, where the memory can be had.
fn copy(
    dir: &Descriptor,
    name: &str,
    id: &str,
    attempt: u32,
    in_memory: u64,
) -> Result<Outcome, PluginError> {
    let db = files::open_read(dir, name)
        .map_err(|e| io(id, e))?
        .ok_or_else(|| {
            PluginError::InvalidRequest(format!("{id}: the database file does not exist"))
        })?;
    let before = look(dir, name, &db)?;
    let header = DbHeader::parse(&before.header)
        .map_err(|e| PluginError::InvalidRequest(format!("{id}: {e}")))?;
    let wal_mode = header.wal_mode();
    if before.hot_journal {
        return Ok(Outcome::Retry(Retry::after_backoff(
            "a write transaction holds a hot journal",
        )));
    }
    if let (Some(shm), Some(h)) = (
        &before.shm,
        super::format::WalHeader::parse(&before.wal_head),
    ) {
        if h.salt != shm.salt {
            return Ok(Outcome::Retry(Retry::after_restart(
                "the WAL is being restarted",
            )));
        }
    }
    let wal = if wal_mode {
        files::open_read(dir, &format!("{name}-wal")).map_err(|e| io(id, e))?
    } else {
        None
    };
    let st = posix::stat_at(dir, name, false).map_err(|e| io(id, e))?;
    let wal_len_now = match &wal {
        Some(w) => w.stat().map_err(|e| io(id, e))?.size,
        None => 0,
    };
    let total = before.size + wal_len_now;
    let buffer = (total <= in_memory)
        .then(|| {
            let mut buf = Vec::new();
            // Within the job's memory limit, or not at all: then it streams.
            buf.try_reserve_exact(usize::try_from(total).ok()?.checked_add(64)?)
                .ok()?;
            Some(buf)
        })
        .flatten();
    let mut dest = match buffer {
        Some(buf) => Dest::Memory(buf),
        None => Dest::Stream(backup_sink::begin(&item(
            id, &header, wal_mode, attempt, &st,
        ))?),
    };

    // 1. The database file.
    let copied = dest.append(&db, before.size)?;
    if copied != before.size {
        return Ok(retry(
            dest,
            Retry::after_backoff(format!(
                "the file shrank to {copied} bytes while it was copied"
            )),
        ));
    }
    // 2. The WAL's committed prefix, as it is now: every frame a checkpoint
    //    can have copied into the database meanwhile is in it.
    let scan = match &wal {
        Some(w) => {
            let len = w.stat().map_err(|e| io(id, e))?.size;
            scan_wal(w, len).map_err(PluginError::Other)?
        }
        None => Default::default(),
    };
    if let (Some(w), true) = (&wal, scan.bytes > 0) {
        if scan.header.as_ref().map(|h| h.page_size) != Some(header.page_size) {
            return Ok(retry(
                dest,
                Retry::after_restart("the WAL's page size differs from the database's"),
            ));
        }
        if dest.append(w, scan.bytes)? != scan.bytes {
            return Ok(retry(
                dest,
                Retry::after_restart("the WAL shrank while it was copied"),
            ));
        }
    }
    // 3. Did anything move that makes the copy unsound?
    let after = look(dir, name, &db)?;
    if let Some(why) = moved(&before, &after, wal_mode) {
        return Ok(retry(dest, why));
    }
    dest.append_bytes(
        &Trailer {
            db_bytes: before.size,
            wal_bytes: scan.bytes,
        }
        .encode(),
    )?;
    let size = match dest {
        Dest::Stream(w) => w.finish()?,
        Dest::Memory(buf) => {
            let w = backup_sink::begin(&item(id, &header, wal_mode, attempt, &st))?;
            for piece in buf.chunks(PIECE as usize) {
                w.write(piece)?;
            }
            w.finish()?
        }
    };
    log(
        Level::Info,
        &format!(
            "{id}: {} bytes of database and {} committed WAL frame(s), attempt {attempt}",
            before.size, scan.frames
        ),
    );
    Ok(Outcome::Done(size))
}

/// The item, with the file's owner, mode and mtime for restore.
fn item(id: &str, header: &DbHeader, wal_mode: bool, attempt: u32, st: &posix::Stat) -> Item {
    let mut md = item_metadata(
        0,
        vec![
            ("engine".into(), "sqlite".into()),
            (
                "journal-mode".into(),
                if wal_mode { "wal" } else { "rollback" }.into(),
            ),
            ("page-size".into(), header.page_size.to_string()),
            ("change-counter".into(), header.change_counter.to_string()),
            ("attempt".into(), attempt.to_string()),
        ],
    );
    md.mode = Some(st.mode);
    md.uid = Some(st.uid);
    md.gid = Some(st.gid);
    md.mtime = Some(st.mtime);
    Item {
        id: id.to_owned(),
        kind: ItemKind::Database,
        metadata: md,
    }
}

/// Drops a copy: from memory it simply goes; in the stream the item is
/// aborted (dropping its writer unfinished), and restore skips it.
fn retry(dest: Dest, why: Retry) -> Outcome {
    drop(dest);
    Outcome::Retry(why)
}

/// Why the copy cannot be trusted, if it cannot.
fn moved(before: &Seen, after: &Seen, wal_mode: bool) -> Option<Retry> {
    if after.hot_journal {
        return Some(Retry::after_backoff(
            "a write transaction started during the copy",
        ));
    }
    if !wal_mode {
        // Every commit rewrites page 1 (its change counter) first.
        if after.header != before.header {
            return Some(Retry::after_backoff(
                "a transaction committed during the copy",
            ));
        }
        if after.size != before.size {
            return Some(Retry::after_backoff(
                "the file changed size during the copy",
            ));
        }
        return None;
    }
    if after.header.get(18..20) != before.header.get(18..20) {
        return Some(Retry::after_backoff(
            "the journal mode changed during the copy",
        ));
    }
    // The database file changes only by checkpoints, which copy frames of
    // the current WAL generation; all of those up to now are in the copied
    // prefix. Only a restart of the log (a new generation, new salts)
    // between the two looks can have put pages in the database, or over the
    // copied frames, that the copy does not account for.
    if after.wal_head != before.wal_head {
        return Some(Retry::after_restart(
            "the WAL was restarted during the copy",
        ));
    }
    match (&before.shm, &after.shm) {
        (None, None) => None,
        (Some(b), Some(a)) if a.salt == b.salt => None,
        (Some(_), Some(_)) => Some(Retry::after_restart("the WAL was reset during the copy")),
        _ => Some(Retry::after_backoff(
            "another connection opened or closed the database during the copy",
        )),
    }
}
