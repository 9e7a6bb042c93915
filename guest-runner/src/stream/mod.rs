//! The backup stream: how items travel between guest-runner and the server.
//!
//! A stream is the 8-byte magic `ATTACHE\x01` followed by frames. Every frame is
//!
//! ```text
//! kind: u8 | length: u32 little-endian | payload: [u8; length] | crc32c: u32 little-endian
//! ```
//!
//! where the CRC-32C covers kind, length and payload. Frame kinds, in the order
//! a valid stream has them:
//!
//! | kind | name      | payload                                   |
//! |------|-----------|-------------------------------------------|
//! | 1    | header    | JSON [`Header`], first frame, once         |
//! | 2    | item      | JSON [`ItemRecord`]: opens an item         |
//! | 3    | data      | raw content of the open item, ≤ 1 MiB      |
//! | 4    | item-end  | JSON [`ItemEnd`]: content size, closes it  |
//! | 5    | item-abort| JSON [`Notice`]: the item failed, drop it  |
//! | 6    | warning   | JSON [`Notice`]: an item was skipped       |
//! | 7    | trailer   | JSON [`Trailer`]: totals, last frame, once |
//!
//! A reader rejects a bad CRC, an unknown kind, a frame longer than
//! [`MAX_FRAME`], frames out of order, an `item-end` whose size differs from
//! the data received, and a stream that ends before its trailer. A stream
//! without its trailer is therefore never mistaken for a complete backup.

mod frame;
mod reader;
mod record;
mod writer;

pub use frame::{FrameKind, MAGIC, MAX_DATA, MAX_FRAME};
pub use reader::{Event, StreamReader};
pub use record::{
    check_id, title, Header, ItemEnd, ItemKind, ItemRecord, Notice, Timestamp, Trailer,
    MAX_ID_BYTES, TITLE,
};
pub use writer::StreamWriter;

/// What can go wrong reading or writing a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stream I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an Attaché stream (bad magic)")]
    BadMagic,
    #[error("frame at byte {offset}: checksum mismatch")]
    Checksum { offset: u64 },
    #[error("frame at byte {offset}: unknown kind {kind}")]
    UnknownKind { offset: u64, kind: u8 },
    #[error("frame at byte {offset}: length {len} exceeds the limit of {max}")]
    TooLong { offset: u64, len: u32, max: u32 },
    #[error("frame at byte {offset}: {what}")]
    Sequence { offset: u64, what: String },
    #[error("frame at byte {offset}: bad record: {source}")]
    Record {
        offset: u64,
        source: serde_json::Error,
    },
    #[error("stream ends at byte {offset} before its trailer: the backup is incomplete")]
    Truncated { offset: u64 },
    #[error("item {id:?} refused: {why}")]
    BadItemId { id: String, why: String },
}
