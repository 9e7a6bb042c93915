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
    check_id, title, title_in, Header, ItemEnd, ItemKind, ItemRecord, Notice, Timestamp, Trailer,
    MAX_ID_BYTES, TITLE,
};
pub use writer::StreamWriter;

/// What can go wrong reading or writing a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading or writing failed.
    #[error("stream I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The stream does not start with the magic.
    #[error("not an Attaché stream (bad magic)")]
    BadMagic,
    /// A frame's checksum does not match.
    #[error("frame at byte {offset}: checksum mismatch")]
    Checksum {
        /// Where the frame starts.
        offset: u64,
    },
    /// A frame of no known kind.
    #[error("frame at byte {offset}: unknown kind {kind}")]
    UnknownKind {
        /// Where the frame starts.
        offset: u64,
        /// Its kind byte.
        kind: u8,
    },
    /// A frame longer than frames may be.
    #[error("frame at byte {offset}: length {len} exceeds the limit of {max}")]
    TooLong {
        /// Where the frame starts.
        offset: u64,
        /// Its length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A frame where the stream's order does not allow it.
    #[error("frame at byte {offset}: {what}")]
    Sequence {
        /// Where the frame starts.
        offset: u64,
        /// What is out of order.
        what: String,
    },
    /// A frame's record does not parse.
    #[error("frame at byte {offset}: bad record: {source}")]
    Record {
        /// Where the frame starts.
        offset: u64,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// The stream ends before its trailer.
    #[error("stream ends at byte {offset} before its trailer: the backup is incomplete")]
    Truncated {
        /// Where it ends.
        offset: u64,
    },
    /// An item id the stream refuses.
    #[error("item {id:?} refused: {why}")]
    BadItemId {
        /// The id.
        id: String,
        /// Why it is refused.
        why: String,
    },
}
