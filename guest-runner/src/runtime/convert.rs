//! Between the WIT types plugins see and the stream's JSON records.

use super::bindings::attache::plugin::types::{
    ApplicationKind, Item, ItemKind as WitKind, ItemMetadata, Timestamp as WitTime,
};
use crate::stream::{ItemKind, ItemRecord, Timestamp};

/// A WIT item kind as the stream's.
pub fn kind_to_stream(k: WitKind) -> ItemKind {
    match k {
        WitKind::Directory => ItemKind::Directory,
        WitKind::File => ItemKind::File,
        WitKind::Symlink => ItemKind::Symlink,
        WitKind::Hardlink => ItemKind::Hardlink,
        WitKind::Special => ItemKind::Special,
        WitKind::Database => ItemKind::Database,
        WitKind::Schema => ItemKind::Schema,
        WitKind::Table => ItemKind::Table,
        WitKind::Mailbox => ItemKind::Mailbox,
        WitKind::Message => ItemKind::Message,
        WitKind::Blob => ItemKind::Blob,
    }
}

/// A stream item kind as the WIT's.
pub fn kind_to_wit(k: ItemKind) -> WitKind {
    match k {
        ItemKind::Directory => WitKind::Directory,
        ItemKind::File => WitKind::File,
        ItemKind::Symlink => WitKind::Symlink,
        ItemKind::Hardlink => WitKind::Hardlink,
        ItemKind::Special => WitKind::Special,
        ItemKind::Database => WitKind::Database,
        ItemKind::Schema => WitKind::Schema,
        ItemKind::Table => WitKind::Table,
        ItemKind::Mailbox => WitKind::Mailbox,
        ItemKind::Message => WitKind::Message,
        ItemKind::Blob => WitKind::Blob,
    }
}

/// A plugin's WIT item as the stream's record.
pub fn item_to_record(i: Item) -> ItemRecord {
    let m = i.metadata;
    ItemRecord {
        id: i.id,
        kind: kind_to_stream(i.kind),
        size: m.size,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime.map(|t| Timestamp {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        }),
        symlink_target: m.symlink_target,
        hardlink_target: m.hardlink_target,
        attributes: m.attributes,
        change_token: m.change_token,
        unchanged: false,
    }
}

/// A stream record as the WIT item a restoring plugin reads.
pub fn record_to_item(r: ItemRecord) -> Item {
    Item {
        id: r.id,
        kind: kind_to_wit(r.kind),
        metadata: ItemMetadata {
            size: r.size,
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            mtime: r.mtime.map(|t| WitTime {
                seconds: t.seconds,
                nanoseconds: t.nanoseconds,
            }),
            symlink_target: r.symlink_target,
            hardlink_target: r.hardlink_target,
            attributes: r.attributes,
            change_token: r.change_token,
        },
    }
}

/// The WIT name of an application kind.
pub fn application_kind_name(k: ApplicationKind) -> &'static str {
    match k {
        ApplicationKind::Filesystem => "filesystem",
        ApplicationKind::Database => "database",
        ApplicationKind::Mail => "mail",
        ApplicationKind::Other => "other",
    }
}
