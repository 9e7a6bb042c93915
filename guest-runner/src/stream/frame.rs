//! Frame layout: kind, length, payload, CRC-32C.

use std::io::{self, Read, Write};

/// The first bytes of every stream; the last byte is the format version.
pub const MAGIC: [u8; 8] = *b"ATTACHE\x01";
/// Largest payload a reader accepts.
pub const MAX_FRAME: u32 = 4 << 20;
/// Largest data payload a writer produces.
pub const MAX_DATA: usize = 1 << 20;

/// The kinds of frame (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// The stream header: format, plugin, contract.
    Header = 1,
    /// An item record.
    Item = 2,
    /// A piece of the current item's content.
    Data = 3,
    /// The end of the current item.
    ItemEnd = 4,
    /// The current item was aborted.
    ItemAbort = 5,
    /// A warning.
    Warning = 6,
    /// The trailer: totals.
    Trailer = 7,
}

impl FrameKind {
    /// The kind a byte names, if it names one.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Header,
            2 => Self::Item,
            3 => Self::Data,
            4 => Self::ItemEnd,
            5 => Self::ItemAbort,
            6 => Self::Warning,
            7 => Self::Trailer,
            _ => return None,
        })
    }
}

fn head(kind: FrameKind, len: u32) -> [u8; 5] {
    let l = len.to_le_bytes();
    [kind as u8, l[0], l[1], l[2], l[3]]
}

/// Writes one frame.
pub(crate) fn write_frame(w: &mut impl Write, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
    let len =
        u32::try_from(payload.len()).map_err(|_| io::Error::other("frame payload too large"))?;
    let h = head(kind, len);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h), payload);
    w.write_all(&h)?;
    w.write_all(payload)?;
    w.write_all(&crc.to_le_bytes())
}

/// A frame's head as read, before its payload.
pub(crate) struct RawHead {
    pub kind: u8,
    pub len: u32,
    bytes: [u8; 5],
}

/// Reads a frame head; `Ok(None)` at a clean end of input.
pub(crate) fn read_head(r: &mut impl Read) -> io::Result<Option<RawHead>> {
    let mut bytes = [0u8; 5];
    let mut got = 0;
    while got < bytes.len() {
        match r.read(&mut bytes[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(RawHead {
        kind: bytes[0],
        len: u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]),
        bytes,
    }))
}

/// Reads the payload and checks the CRC; returns whether it matched.
pub(crate) fn read_payload(
    r: &mut impl Read,
    head: &RawHead,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    buf.resize(head.len as usize, 0);
    r.read_exact(buf)?;
    let mut crc = [0u8; 4];
    r.read_exact(&mut crc)?;
    let want = crc32c::crc32c_append(crc32c::crc32c(&head.bytes), buf);
    Ok(u32::from_le_bytes(crc) == want)
}
