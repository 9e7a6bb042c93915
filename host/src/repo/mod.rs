//! The repository: completed snapshots, each with its item index and the
//! verified backup stream it was made from.
//!
//! ```text
//! REPO/config.json              format marker
//! REPO/snapshots/ID/snapshot.json   what was backed up, when, totals, warnings
//! REPO/snapshots/ID/items.json      every item with its metadata and stream offset
//! REPO/snapshots/ID/stream          the stream, exactly as checked on arrival
//! REPO/tmp/ID/                      a snapshot being written
//! ```
//!
//! A snapshot is written in `tmp/`, every file and the directory are synced,
//! and only then is it renamed into `snapshots/`: a snapshot is listed only
//! once it is complete and durable.

mod extract;
mod ingest;
mod item_index;
mod repository;
mod snapshot;

pub use extract::write_restore_stream;
pub use ingest::{ingest, Origin};
pub use repository::Repository;
