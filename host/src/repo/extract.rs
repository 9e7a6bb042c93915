//! Making a restore stream from a snapshot: the selected items, read from
//! the stored stream at their offsets and checked again on the way out.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom, Write};

use guest_runner::stream::{Event, Header, ItemKind, ItemRecord, StreamReader, StreamWriter};

use super::item_index::IndexedItem;
use super::repository::{io_err, RepoError, Repository};
use super::snapshot::Snapshot;

/// Writes a restore stream of `selected` (a subset of `all`, in stream
/// order) to `out`. A hard link whose first name is not selected becomes a
/// plain file carrying that content, so that it can be restored alone.
pub fn write_restore_stream(
    repo: &Repository,
    snap: &Snapshot,
    all: &[IndexedItem],
    selected: &[&IndexedItem],
    out: impl Write,
) -> Result<u64, RepoError> {
    let path = repo.stream_path(snap);
    let mut file = File::open(&path).map_err(io_err(&path))?;
    let by_id: HashMap<&str, &IndexedItem> = all.iter().map(|i| (i.item.id.as_str(), i)).collect();
    let chosen: HashSet<&str> = selected.iter().map(|i| i.item.id.as_str()).collect();
    let header = Header {
        format: 1,
        plugin: snap.plugin.clone(),
        plugin_version: snap.plugin_version.clone(),
        created: snap.time,
    };
    let mut w = StreamWriter::new(out, &header)?;
    for it in selected {
        let mut record = it.item.clone();
        let mut from = it.offset;
        if record.kind == ItemKind::Hardlink {
            let target = record.hardlink_target.as_deref().unwrap_or_default();
            if !chosen.contains(target) {
                let t = by_id.get(target).ok_or_else(|| {
                    RepoError::Invalid(format!(
                        "hard link {} names {target:?}, which the snapshot lacks",
                        record.id
                    ))
                })?;
                record = ItemRecord {
                    id: record.id,
                    hardlink_target: None,
                    ..t.item.clone()
                };
                from = t.offset;
            }
        }
        copy_item(&mut file, from, &record, &mut w).map_err(|e| match e {
            RepoError::Stream(s) => RepoError::Invalid(format!(
                "snapshot {} is damaged ({s}); item {} cannot be restored",
                snap.id, record.id
            )),
            e => e,
        })?;
    }
    let (_, totals) = w.finish()?;
    Ok(totals.items)
}

/// Copies the content of the item whose frame starts at `offset` into `w`
/// under `record`.
fn copy_item<W: Write>(
    file: &mut File,
    offset: u64,
    record: &ItemRecord,
    w: &mut StreamWriter<W>,
) -> Result<(), RepoError> {
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| RepoError::Invalid(e.to_string()))?;
    let mut r = StreamReader::at_item(BufReader::with_capacity(1 << 20, &*file), offset);
    match r.next_event()? {
        Some(Event::Item(_)) => {}
        _ => {
            return Err(RepoError::Invalid(format!(
                "no item frame at byte {offset}"
            )))
        }
    }
    w.begin_item(record)?;
    loop {
        match r.next_event()? {
            Some(Event::Data(d)) => w.data(d)?,
            Some(Event::ItemEnd(_)) => break,
            _ => {
                return Err(RepoError::Invalid(format!(
                    "item at byte {offset} is incomplete"
                )))
            }
        }
    }
    w.end_item()?;
    Ok(())
}
