//! Reading and checking a stream.

use std::io::Read;

use serde::de::DeserializeOwned;

use super::frame::{read_head, read_payload, FrameKind, MAGIC, MAX_FRAME};
use super::record::{Header, ItemEnd, ItemRecord, Notice, Trailer};
use super::StreamError;

/// One step of a stream.
#[derive(Debug)]
pub enum Event<'a> {
    /// The header.
    Header(Header),
    /// An item begins.
    Item(ItemRecord),
    /// A piece of its content.
    Data(&'a [u8]),
    /// The item ends.
    ItemEnd(ItemEnd),
    /// The item was aborted.
    ItemAbort(Notice),
    /// A warning.
    Warning(Notice),
    /// The trailer.
    Trailer(Trailer),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Magic,
    Header,
    Between,
    InItem { size: u64 },
    Done,
}

/// Reads a stream frame by frame and checks it as it goes (see the module
/// documentation for what is rejected).
pub struct StreamReader<R: Read> {
    r: R,
    buf: Vec<u8>,
    offset: u64,
    state: State,
    seen: Trailer,
    /// Started at an item, not at the stream's beginning: totals are partial.
    partial: bool,
}

impl<R: Read> StreamReader<R> {
    /// A reader of the stream `r`.
    pub fn new(r: R) -> Self {
        Self {
            r,
            buf: Vec::new(),
            offset: 0,
            state: State::Magic,
            seen: Trailer::default(),
            partial: false,
        }
    }

    /// A reader positioned at the item frame that starts at byte `offset` of
    /// a stream (`r` must already be there), for reading single items of a
    /// stored stream. Frames are checked as usual; the trailer's totals are
    /// not, since the reader did not see the whole stream.
    pub fn at_item(r: R, offset: u64) -> Self {
        Self {
            r,
            buf: Vec::new(),
            offset,
            state: State::Between,
            seen: Trailer::default(),
            partial: true,
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Bytes consumed so far: the offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the trailer has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next event; `Ok(None)` only after the trailer. Nothing past the
    /// trailer is read: on a data channel that stays open, the stream ends
    /// there, not at end of file.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, StreamError> {
        if self.state == State::Done {
            return Ok(None);
        }
        if self.state == State::Magic {
            let mut m = [0u8; 8];
            self.r
                .read_exact(&mut m)
                .map_err(|_| StreamError::BadMagic)?;
            if m != MAGIC {
                return Err(StreamError::BadMagic);
            }
            self.offset = 8;
            self.state = State::Header;
        }
        let at = self.offset;
        let head = match read_head(&mut self.r) {
            Ok(Some(h)) => h,
            Ok(None) => return Err(StreamError::Truncated { offset: at }),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(StreamError::Truncated { offset: at })
            }
            Err(e) => return Err(e.into()),
        };
        let kind = FrameKind::from_u8(head.kind).ok_or(StreamError::UnknownKind {
            offset: at,
            kind: head.kind,
        })?;
        if head.len > MAX_FRAME {
            return Err(StreamError::TooLong {
                offset: at,
                len: head.len,
                max: MAX_FRAME,
            });
        }
        match read_payload(&mut self.r, &head, &mut self.buf) {
            Ok(true) => {}
            Ok(false) => return Err(StreamError::Checksum { offset: at }),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(StreamError::Truncated { offset: at })
            }
            Err(e) => return Err(e.into()),
        }
        self.offset += 9 + u64::from(head.len);
        let seq = |what: &str| StreamError::Sequence {
            offset: at,
            what: what.into(),
        };
        let ev = match (kind, self.state) {
            (_, State::Done) => return Err(seq("frame after the trailer")),
            (FrameKind::Header, State::Header) => {
                self.state = State::Between;
                Event::Header(parse(at, &self.buf)?)
            }
            (_, State::Header) => return Err(seq("stream does not start with a header")),
            (FrameKind::Item, State::Between) => {
                let item: ItemRecord = parse(at, &self.buf)?;
                self.state = State::InItem { size: 0 };
                Event::Item(item)
            }
            (FrameKind::Data, State::InItem { size }) => {
                self.state = State::InItem {
                    size: size + self.buf.len() as u64,
                };
                Event::Data(&self.buf)
            }
            (FrameKind::ItemEnd, State::InItem { size }) => {
                let end: ItemEnd = parse(at, &self.buf)?;
                if end.size != size {
                    return Err(seq(&format!(
                        "item closes with size {} but carried {size} bytes",
                        end.size
                    )));
                }
                self.seen.items += 1;
                self.seen.bytes += size;
                self.state = State::Between;
                Event::ItemEnd(end)
            }
            (FrameKind::ItemAbort, State::InItem { .. }) => {
                self.seen.warnings += 1;
                self.state = State::Between;
                Event::ItemAbort(parse(at, &self.buf)?)
            }
            (FrameKind::Warning, State::Between) => {
                self.seen.warnings += 1;
                Event::Warning(parse(at, &self.buf)?)
            }
            (FrameKind::Trailer, State::Between) => {
                let t: Trailer = parse(at, &self.buf)?;
                if !self.partial && t != self.seen {
                    return Err(seq(&format!(
                        "trailer says {t:?} but the stream held {:?}",
                        self.seen
                    )));
                }
                self.state = State::Done;
                Event::Trailer(t)
            }
            (k, State::InItem { .. }) => return Err(seq(&format!("{k:?} frame inside an item"))),
            (k, _) => return Err(seq(&format!("{k:?} frame outside an item"))),
        };
        Ok(Some(ev))
    }
}

fn parse<T: DeserializeOwned>(offset: u64, b: &[u8]) -> Result<T, StreamError> {
    serde_json::from_slice(b).map_err(|source| StreamError::Record { offset, source })
}

#[cfg(test)]
mod tests {
    use super::super::{Header, ItemKind, ItemRecord, StreamWriter};
    use super::*;

    fn item(id: &str) -> ItemRecord {
        ItemRecord {
            mode: Some(0o100644),
            ..ItemRecord::new(id, ItemKind::File, 3)
        }
    }

    fn sample() -> Vec<u8> {
        let h = Header {
            format: 1,
            plugin: "t".into(),
            plugin_version: "1".into(),
            created: 0,
        };
        let mut w = StreamWriter::new(Vec::new(), &h).unwrap();
        w.begin_item(&item("/a")).unwrap();
        w.data(b"abc").unwrap();
        w.end_item().unwrap();
        w.warning("/b", "unreadable").unwrap();
        w.finish().unwrap().0
    }

    fn read_all(b: &[u8]) -> Result<Vec<String>, StreamError> {
        let mut r = StreamReader::new(b);
        let mut out = vec![];
        while let Some(e) = r.next_event()? {
            out.push(match e {
                Event::Data(d) => format!("data {}", d.len()),
                e => format!("{e:?}")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let ev = read_all(&sample()).unwrap();
        assert_eq!(
            ev,
            ["Header", "Item", "data 3", "ItemEnd", "Warning", "Trailer"]
        );
    }

    #[test]
    fn every_truncation_is_detected() {
        let s = sample();
        for cut in 0..s.len() {
            assert!(read_all(&s[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let s = sample();
        for i in 0..s.len() {
            let mut c = s.clone();
            c[i] ^= 0x40;
            assert!(read_all(&c).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn huge_length_is_refused_without_allocating() {
        let mut s = MAGIC.to_vec();
        s.extend_from_slice(&[1, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(read_all(&s), Err(StreamError::TooLong { .. })));
    }
}
