//! `attache:plugin/backup-sink`: items a plugin emits become stream frames.
//! File content handed over as a WASI descriptor is read here, natively,
//! with positional reads that leave the plugin's view of the file untouched.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;

use super::bindings::attache::plugin::backup_sink::{Host, HostItemWriter, ItemData};
use super::bindings::attache::plugin::types::{Item, ItemMetadata, PluginError};
use super::convert::{item_to_record, record_to_item};
use super::{Previous, State};
use crate::stream::{ItemRecord, StreamWriter, MAX_DATA};

/// The open item a plugin writes through `item-writer`.
#[allow(
    unreachable_pub,
    reason = "wasmtime's bindgen re-exports it (`with:`) by `pub use`, which needs it `pub`"
)]
pub struct ItemWriterHandle {
    id: String,
}

/// The backup stream being written, and what the plugin has done to it.
pub struct Sink {
    writer: StreamWriter<Box<dyn Write + Send>>,
    buf: Vec<u8>,
    /// The previous backup's items, for `previous` and `unchanged`.
    previous: Previous,
    /// The first transport failure: once set, the job fails whatever the
    /// plugin does with the error it was given.
    failed: Option<String>,
}

impl Sink {
    /// A sink writing to `writer`; `previous` is the last backup's catalog.
    pub fn new(writer: StreamWriter<Box<dyn Write + Send>>, previous: Previous) -> Self {
        Self {
            writer,
            buf: vec![0; MAX_DATA],
            previous,
            failed: None,
        }
    }

    /// The previous catalog, kept by the caller so that it is freed after
    /// the stream's trailer is out rather than before: the host waits for
    /// the trailer, not for this.
    pub fn previous(&self) -> Previous {
        self.previous.clone()
    }

    /// The stream writer, to finish it once the plugin returns; or the
    /// transport failure that broke it.
    pub fn into_writer(self) -> Result<StreamWriter<Box<dyn Write + Send>>, String> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.writer),
        }
    }

    fn transport<T>(&mut self, r: Result<T, crate::stream::StreamError>) -> Result<T, PluginError> {
        r.map_err(|e| {
            let msg = e.to_string();
            self.failed.get_or_insert(msg.clone());
            PluginError::Transport(msg)
        })
    }

    /// Appends `len` bytes (or to end of file when `None`) of `file` from
    /// `offset`. A read error aborts the item and is reported as a warning:
    /// the backup goes on.
    fn copy_file(
        &mut self,
        id: &str,
        file: &std::fs::File,
        mut offset: u64,
        len: Option<u64>,
    ) -> Result<Option<u64>, PluginError> {
        let mut copied = 0u64;
        loop {
            let want = match len {
                Some(l) => (l - copied).min(self.buf.len() as u64) as usize,
                None => self.buf.len(),
            };
            if want == 0 {
                return Ok(Some(copied));
            }
            let n = match file.read_at(&mut self.buf[..want], offset) {
                Ok(0) => return Ok(Some(copied)),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let r = self
                        .writer
                        .abort_item(id, &format!("read failed after {copied} bytes: {e}"));
                    self.transport(r)?;
                    return Ok(None);
                }
            };
            let r = self.writer.data(&self.buf[..n]);
            self.transport(r)?;
            copied += n as u64;
            offset += n as u64;
        }
    }
}

fn sink(state: &mut State) -> Result<&mut Sink, PluginError> {
    state.sink.as_mut().ok_or_else(|| {
        PluginError::InvalidRequest("the backup sink is only available during backup".into())
    })
}

fn file_of<'a>(
    state: &'a State,
    fd: &Resource<Descriptor>,
) -> wasmtime::Result<Result<&'a Arc<std::fs::File>, PluginError>> {
    Ok(match state.table.get(fd)? {
        Descriptor::File(f) => Ok(&f.file),
        Descriptor::Dir(_) => Err(PluginError::InvalidRequest(
            "a directory has no content to back up".into(),
        )),
    })
}

fn checked(item: Item) -> Result<ItemRecord, PluginError> {
    let rec = item_to_record(item);
    rec.check_id()
        .map_err(|why| PluginError::InvalidRequest(format!("item id {:?}: {why}", rec.id)))?;
    Ok(rec)
}

impl Host for State {
    fn emit(&mut self, item: Item, data: ItemData) -> wasmtime::Result<Result<(), PluginError>> {
        let rec = match checked(item) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        // Take the file out of the table before borrowing the sink.
        let file = match &data {
            ItemData::File(fd) => match file_of(self, fd)? {
                Ok(f) => Some(f.clone()),
                Err(e) => return Ok(Err(e)),
            },
            _ => None,
        };
        let s = match sink(self) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        if s.writer.item_open() {
            return Ok(Err(PluginError::InvalidRequest(
                "an item-writer is still open; finish it first".into(),
            )));
        }
        let mut rec = rec;
        if let ItemData::Unchanged = data {
            // A catalog that could not be read fails the job, not the item.
            let known = s
                .previous
                .contains(&rec.id)
                .map_err(|e| wasmtime::Error::msg(format!("the previous catalog: {e}")))?;
            if !known {
                return Ok(Err(PluginError::InvalidRequest(format!(
                    "{} is marked unchanged but has no previous version",
                    rec.id
                ))));
            }
            rec.unchanged = true;
        }
        Ok((|| {
            let r = s.writer.begin_item(&rec);
            s.transport(r)?;
            match (data, file) {
                (ItemData::Unchanged, _) => {}
                (ItemData::None, _) => {}
                (ItemData::Inline(bytes), _) => {
                    let r = s.writer.data(&bytes);
                    s.transport(r)?;
                }
                (ItemData::File(_), Some(f)) => {
                    if s.copy_file(&rec.id, &f, 0, None)?.is_none() {
                        return Ok(());
                    }
                }
                (ItemData::File(_), None) => unreachable!("file taken above"),
            }
            let r = s.writer.end_item();
            s.transport(r).map(drop)
        })())
    }

    fn begin(
        &mut self,
        item: Item,
    ) -> wasmtime::Result<Result<Resource<ItemWriterHandle>, PluginError>> {
        let rec = match checked(item) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let s = match sink(self) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        if s.writer.item_open() {
            return Ok(Err(PluginError::InvalidRequest(
                "only one item may be open at a time".into(),
            )));
        }
        let r = s.writer.begin_item(&rec);
        if let Err(e) = s.transport(r) {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(ItemWriterHandle { id: rec.id })?))
    }

    fn previous(&mut self, id: String) -> wasmtime::Result<Option<ItemMetadata>> {
        let Ok(s) = sink(self) else {
            return Ok(None);
        };
        let found = s
            .previous
            .get(&id)
            .map_err(|e| wasmtime::Error::msg(format!("the previous catalog: {e}")))?;
        Ok(found.map(|r| record_to_item(r).metadata))
    }

    fn warn(&mut self, id: String, message: String) -> wasmtime::Result<()> {
        tracing::warn!(
            plugin = self.plugin.as_str(),
            item = id.as_str(),
            "{message}"
        );
        if let Ok(s) = sink(self) {
            let r = s.writer.warning(&id, &message);
            let _ = s.transport(r);
        }
        Ok(())
    }
}

impl HostItemWriter for State {
    fn write(
        &mut self,
        w: Resource<ItemWriterHandle>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        self.table.get(&w)?;
        let s = match sink(self) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let r = s.writer.data(&bytes);
        Ok(s.transport(r))
    }

    fn write_file(
        &mut self,
        w: Resource<ItemWriterHandle>,
        fd: Resource<Descriptor>,
        offset: u64,
        length: u64,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        let id = self.table.get(&w)?.id.clone();
        let file = match file_of(self, &fd)? {
            Ok(f) => f.clone(),
            Err(e) => return Ok(Err(e)),
        };
        let s = match sink(self) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match s.copy_file(&id, &file, offset, Some(length)) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(PluginError::Other(format!(
                "reading the file for {id} failed; the item was aborted"
            ))),
            Err(e) => Err(e),
        })
    }

    fn finish(
        &mut self,
        w: Resource<ItemWriterHandle>,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        self.table.delete(w)?;
        let s = match sink(self) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        if !s.writer.item_open() {
            return Ok(Err(PluginError::Other("the item was aborted".into())));
        }
        let r = s.writer.end_item();
        Ok(s.transport(r))
    }

    fn drop(&mut self, w: Resource<ItemWriterHandle>) -> wasmtime::Result<()> {
        let h = self.table.delete(w)?;
        if let Ok(s) = sink(self) {
            if s.writer.item_open() {
                let r = s
                    .writer
                    .abort_item(&h.id, "the plugin dropped the item unfinished");
                let _ = s.transport(r);
            }
        }
        Ok(())
    }
}
