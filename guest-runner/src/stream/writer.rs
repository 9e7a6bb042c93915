//! Writing a stream.

use std::io::Write;

use super::frame::{write_frame, FrameKind, MAGIC, MAX_DATA};
use super::record::{Header, ItemEnd, ItemRecord, Notice, Trailer};
use super::StreamError;

/// Writes frames in the order a reader accepts, keeping the totals for the
/// trailer.
pub struct StreamWriter<W: Write> {
    w: W,
    open: Option<u64>,
    totals: Trailer,
}

impl<W: Write> StreamWriter<W> {
    /// Starts a stream: magic and header.
    pub fn new(mut w: W, header: &Header) -> Result<Self, StreamError> {
        w.write_all(&MAGIC)?;
        write_frame(&mut w, FrameKind::Header, &json(header))?;
        Ok(Self {
            w,
            open: None,
            totals: Trailer::default(),
        })
    }

    /// Opens an item; its content follows with [`data`](Self::data).
    pub fn begin_item(&mut self, item: &ItemRecord) -> Result<(), StreamError> {
        if self.open.is_some() {
            return Err(misuse("an item is already open"));
        }
        write_frame(&mut self.w, FrameKind::Item, &json(item))?;
        self.open = Some(0);
        Ok(())
    }

    /// Appends content to the open item, in frames of at most 1 MiB.
    pub fn data(&mut self, mut bytes: &[u8]) -> Result<(), StreamError> {
        let Some(size) = self.open.as_mut() else {
            return Err(misuse("data outside an item"));
        };
        while !bytes.is_empty() {
            let n = bytes.len().min(MAX_DATA);
            write_frame(&mut self.w, FrameKind::Data, &bytes[..n])?;
            *size += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Whether an item is open.
    pub fn item_open(&self) -> bool {
        self.open.is_some()
    }

    /// Closes the open item and returns its content size.
    pub fn end_item(&mut self) -> Result<u64, StreamError> {
        let size = self.open.take().ok_or_else(|| misuse("no item is open"))?;
        write_frame(&mut self.w, FrameKind::ItemEnd, &json(&ItemEnd { size }))?;
        self.totals.items += 1;
        self.totals.bytes += size;
        Ok(size)
    }

    /// Drops the open item: readers discard it and record the reason as a
    /// warning.
    pub fn abort_item(&mut self, id: &str, message: &str) -> Result<(), StreamError> {
        self.open.take().ok_or_else(|| misuse("no item is open"))?;
        let n = Notice {
            id: id.into(),
            message: message.into(),
        };
        write_frame(&mut self.w, FrameKind::ItemAbort, &json(&n))?;
        self.totals.warnings += 1;
        Ok(())
    }

    /// Records that an item was skipped.
    pub fn warning(&mut self, id: &str, message: &str) -> Result<(), StreamError> {
        let n = Notice {
            id: id.into(),
            message: message.into(),
        };
        write_frame(&mut self.w, FrameKind::Warning, &json(&n))?;
        self.totals.warnings += 1;
        Ok(())
    }

    /// Totals so far.
    pub fn totals(&self) -> Trailer {
        self.totals
    }

    /// Writes the trailer and flushes. Without it the stream is incomplete.
    pub fn finish(mut self) -> Result<(W, Trailer), StreamError> {
        if self.open.is_some() {
            return Err(misuse("an item is still open"));
        }
        write_frame(&mut self.w, FrameKind::Trailer, &json(&self.totals))?;
        self.w.flush()?;
        Ok((self.w, self.totals))
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain records cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn misuse(what: &str) -> StreamError {
    StreamError::Io(std::io::Error::other(format!(
        "stream writer misuse: {what}"
    )))
}
