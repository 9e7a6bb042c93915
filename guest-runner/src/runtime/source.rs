//! `attache:plugin/restore-source`: items of a restore stream, handed to the
//! plugin one at a time. Ids are checked before the plugin sees them; content
//! is written natively into descriptors the plugin opened.

use std::io::Read;
use std::os::unix::fs::FileExt;

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;

use super::bindings::attache::plugin::restore_source::{Host, HostItemContent};
use super::bindings::attache::plugin::types::{Item, PluginError};
use super::convert::record_to_item;
use super::notes::Notes;
use super::State;
use crate::stream::{Event, Header, StreamError, StreamReader, Trailer};

/// The content of the item most recently handed out.
#[allow(
    unreachable_pub,
    reason = "wasmtime's bindgen re-exports it (`with:`) by `pub use`, which needs it `pub`"
)]
pub struct ContentHandle {
    seq: u64,
}

/// The restore stream and the position of the plugin in it.
pub struct Source {
    reader: StreamReader<Box<dyn Read + Send>>,
    header: Header,
    seq: u64,
    /// Whether the current item's content is still being read.
    in_item: bool,
    /// Whether the current item ended with an abort frame.
    aborted: bool,
    /// Data of the current item read from the stream but not yet consumed.
    pending: Vec<u8>,
    declared: u64,
    consumed: u64,
    /// Items refused before reaching the plugin, with the reason.
    pub refused: Notes,
    /// Warnings the plugin recorded.
    pub warnings: Notes,
    failed: Option<String>,
    trailer: Option<Trailer>,
}

impl Source {
    /// Opens a restore stream and reads its header.
    pub fn new(input: Box<dyn Read + Send>) -> Result<Self, StreamError> {
        let mut reader = StreamReader::new(input);
        let header = match reader.next_event()? {
            Some(Event::Header(h)) => h,
            _ => {
                return Err(StreamError::Sequence {
                    offset: 8,
                    what: "stream does not start with a header".into(),
                })
            }
        };
        Ok(Self {
            reader,
            header,
            seq: 0,
            in_item: false,
            aborted: false,
            pending: Vec::new(),
            declared: 0,
            consumed: 0,
            refused: Notes::default(),
            warnings: Notes::default(),
            failed: None,
            trailer: None,
        })
    }

    /// The restore stream's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads what the plugin left unread, to the trailer, so that a damaged
    /// or truncated stream fails the job even when the plugin stopped early.
    pub fn finish(mut self) -> Result<Trailer, String> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        while self.trailer.is_none() {
            if let Err(e) = self.step() {
                return Err(format!("{e:?}"));
            }
        }
        Ok(self.trailer.unwrap_or_default())
    }

    fn fail(&mut self, e: StreamError) -> PluginError {
        let msg = e.to_string();
        self.failed.get_or_insert(msg.clone());
        PluginError::Transport(msg)
    }

    /// Advances one event, keeping the current item's data in `pending`.
    /// Returns a new item when one starts.
    fn step(&mut self) -> Result<Option<Item>, PluginError> {
        self.step_to(Data::Keep)
    }

    /// Advances one event, with the current item's data going where `data`
    /// says. Returns a new item when one starts.
    fn step_to(&mut self, data: Data<'_>) -> Result<Option<Item>, PluginError> {
        let ev = match self.reader.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                return Err(PluginError::Transport(
                    "read past the end of the stream".into(),
                ))
            }
            Err(e) => return Err(self.fail(e)),
        };
        match ev {
            Event::Item(rec) => {
                self.pending.clear();
                self.consumed = 0;
                self.declared = rec.size;
                self.in_item = true;
                self.aborted = false;
                if let Err(why) = rec.check_id() {
                    tracing::warn!(item = rec.id.as_str(), "refused: {why}");
                    self.refused.push(rec.id, why);
                    self.skip_item()?;
                    return Ok(None);
                }
                return Ok(Some(record_to_item(rec)));
            }
            Event::Data(d) => match data {
                Data::Keep => self.pending.extend_from_slice(d),
                Data::Drop => {}
                Data::Write { file, at } => {
                    write_at(file, d, at)?;
                    self.consumed += d.len() as u64;
                }
            },
            Event::ItemEnd(_) => self.in_item = false,
            Event::ItemAbort(_) => {
                self.in_item = false;
                self.aborted = true;
            }
            Event::Warning(_) | Event::Header(_) => {}
            Event::Trailer(t) => self.trailer = Some(t),
        }
        Ok(None)
    }

    fn skip_item(&mut self) -> Result<(), PluginError> {
        while self.in_item {
            self.pending.clear();
            self.step_to(Data::Drop)?;
        }
        self.pending.clear();
        Ok(())
    }

    /// The next item, skipping what the plugin left of the current one.
    fn next_item(&mut self) -> Result<Option<Item>, PluginError> {
        self.skip_item()?;
        while self.trailer.is_none() {
            if let Some(item) = self.step()? {
                self.seq += 1;
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Fills `pending` with the next data of the current item; false at its end.
    fn fill(&mut self) -> Result<bool, PluginError> {
        while self.pending.is_empty() {
            if !self.in_item {
                if self.aborted {
                    return Err(incomplete());
                }
                return Ok(false);
            }
            self.step()?;
        }
        Ok(true)
    }

    fn current(&self, h: &ContentHandle) -> Result<(), PluginError> {
        if h.seq == self.seq {
            Ok(())
        } else {
            Err(PluginError::InvalidRequest(
                "this content belongs to an earlier item".into(),
            ))
        }
    }
}

/// Where [`Source::step_to`] puts a piece of the current item's content.
enum Data<'a> {
    /// Into `pending`, for the plugin to read.
    Keep,
    /// Nowhere: the item is being skipped.
    Drop,
    /// Into `file` at `at`, which moves past it.
    Write {
        file: &'a std::fs::File,
        at: &'a mut u64,
    },
}

/// Writes `bytes` into `file` at `at`, which moves past them.
fn write_at(file: &std::fs::File, bytes: &[u8], at: &mut u64) -> Result<(), PluginError> {
    file.write_all_at(bytes, *at)
        .map_err(|e| PluginError::Other(format!("write failed at byte {at}: {e}")))?;
    *at += bytes.len() as u64;
    Ok(())
}

/// The error for content that an abort frame cut short.
fn incomplete() -> PluginError {
    PluginError::Other("the item's content is incomplete in the stream (aborted at backup)".into())
}

fn source(state: &mut State) -> Result<&mut Source, PluginError> {
    state.source.as_mut().ok_or_else(|| {
        PluginError::InvalidRequest("the restore source is only available during restore".into())
    })
}

impl Host for State {
    fn next(
        &mut self,
    ) -> wasmtime::Result<Result<Option<(Item, Resource<ContentHandle>)>, PluginError>> {
        let s = match source(self) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        match s.next_item() {
            Ok(Some(item)) => {
                let seq = s.seq;
                let h = self.table.push(ContentHandle { seq })?;
                Ok(Ok(Some((item, h))))
            }
            Ok(None) => Ok(Ok(None)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn warn(&mut self, id: String, message: String) -> wasmtime::Result<()> {
        tracing::warn!(
            plugin = self.plugin.as_str(),
            item = id.as_str(),
            "{message}"
        );
        if let Ok(s) = source(self) {
            s.warnings.push(id, message);
        }
        Ok(())
    }
}

/// How much of a large file is written between two [`let_go_of_written`].
const LET_GO_EVERY: u64 = 8 << 20;

/// Asks the kernel to write back what is written of a large file being
/// restored and to free the pages already written back. A restore does not
/// read what it writes, and the guest's page cache is its applications':
/// a restored file of gigabytes would otherwise push their pages out, and
/// in a VM whose free memory goes back to the hypervisor every fresh page
/// is dear (a 1 GiB restore's writes cost 4-7 s of system time there).
/// Each call starts write-back of the dirty pages and drops the clean ones
/// written before; only advice, nothing else changes when it is not taken.
fn let_go_of_written(file: &std::fs::File, written: u64) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let _ = rustix::fs::fadvise(
        file,
        0,
        std::num::NonZeroU64::new(written),
        rustix::fs::Advice::DontNeed,
    );
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let _ = (file, written);
}

impl HostItemContent for State {
    fn remaining(&mut self, h: Resource<ContentHandle>) -> wasmtime::Result<u64> {
        let seq = self.table.get(&h)?.seq;
        Ok(match source(self) {
            Ok(s) if s.seq == seq && s.in_item => s
                .declared
                .saturating_sub(s.consumed)
                .max(s.pending.len() as u64),
            _ => 0,
        })
    }

    fn read(
        &mut self,
        h: Resource<ContentHandle>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let seq = self.table.get(&h)?.seq;
        let s = match source(self) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok((|| {
            s.current(&ContentHandle { seq })?;
            if !s.fill()? {
                return Ok(Vec::new());
            }
            let n = s.pending.len().min(max as usize);
            s.consumed += n as u64;
            // All of it (the usual case: a frame's data is at most what a
            // plugin asks for) moves out without a copy.
            if n == s.pending.len() {
                return Ok(std::mem::take(&mut s.pending));
            }
            let piece = s.pending[..n].to_vec();
            s.pending.drain(..n);
            Ok(piece)
        })())
    }

    fn copy_to(
        &mut self,
        h: Resource<ContentHandle>,
        fd: Resource<Descriptor>,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        let seq = self.table.get(&h)?.seq;
        let file = match self.table.get(&fd)? {
            Descriptor::File(f) if !f.perms.write_not_permitted() => f.file.clone(),
            Descriptor::File(_) => {
                return Ok(Err(PluginError::AccessDenied(
                    "the descriptor is not writable".into(),
                )))
            }
            Descriptor::Dir(_) => {
                return Ok(Err(PluginError::InvalidRequest(
                    "cannot copy content into a directory".into(),
                )))
            }
        };
        let s = match source(self) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok((|| {
            s.current(&ContentHandle { seq })?;
            let mut offset = 0u64;
            let mut advised = 0u64;
            // What a read left of the data, then the rest written from the
            // stream's frames as they come, without copying them first
            // (a copy of every byte was 4% of a 1 GiB restore's samples).
            write_at(&file, &s.pending, &mut offset)?;
            s.consumed += s.pending.len() as u64;
            s.pending.clear();
            while s.in_item {
                s.step_to(Data::Write {
                    file: &file,
                    at: &mut offset,
                })?;
                if offset - advised >= LET_GO_EVERY {
                    let_go_of_written(&file, offset);
                    advised = offset;
                }
            }
            if s.aborted {
                return Err(incomplete());
            }
            // A file that was longer is cut to the content. A new file
            // (the usual case) has the content's length already, and an
            // `ftruncate` after the write is dear on ext4: restoring
            // 200,000 small files spent 17% of its samples zeroing page
            // cache behind it, and took 18.4-20.1 s against 15.1-15.5 s.
            let len = file.metadata().map(|m| m.len());
            if len.map_or(true, |len| len != offset) {
                file.set_len(offset)
                    .map_err(|e| PluginError::Other(format!("truncate failed: {e}")))?;
            }
            Ok(offset)
        })())
    }

    fn drop(&mut self, h: Resource<ContentHandle>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}
