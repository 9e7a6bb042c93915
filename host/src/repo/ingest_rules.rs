//! What the host accepts from a backup stream. The stream comes from a
//! guest, which is not trusted: a compromised VM controls every byte of it.
//! The stream reader checks framing (CRCs, lengths, order, totals); these
//! rules check what the records say, so that what is stored is bounded in
//! the size of each item and of the warnings list, and never depends on how
//! much a guest chooses to send.
//!
//! An item that breaks a rule refuses the whole stream: an honest runner
//! checks ids itself before it writes them, so such a stream is not from
//! one. Warnings beyond the bounds are not an attack on their own (a large
//! tree can have many unreadable files): they are counted, and the snapshot
//! records one summary warning instead.

use std::collections::HashSet;

use guest_runner::stream::{check_id, ItemRecord, Notice, MAX_ID_BYTES};

use crate::store::snapshot::Warning;

/// Most warnings a snapshot records.
pub(crate) const MAX_WARNINGS: usize = 10_000;
/// Most bytes of warning ids and messages a snapshot records.
pub(crate) const MAX_WARNING_BYTES: usize = 1 << 20;
/// Longest warning message kept; longer ones are cut.
pub(crate) const MAX_WARNING_MESSAGE: usize = 4096;
/// Most attributes on one item.
pub(crate) const MAX_ATTRIBUTES: usize = 1024;
/// Most bytes of attribute names and values on one item.
pub(crate) const MAX_ATTRIBUTE_BYTES: usize = 256 << 10;
/// Most bytes of attributes over all the items of a snapshot: the item
/// list is held in memory until the snapshot is written.
pub(crate) const MAX_SNAPSHOT_ATTRIBUTE_BYTES: usize = 256 << 20;
/// Longest symlink target, change token or plugin version.
pub(crate) const MAX_FIELD_BYTES: usize = 4096;

/// Why the host refused a stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("the stream is refused: item {id} has a bad id: {why}")]
    BadId { id: Shown, why: String },
    #[error("the stream is refused: item {id} appears twice (ids are unique in a snapshot)")]
    Duplicate { id: Shown },
    #[error("the stream is refused: item {id} has a bad hard link target {target}: {why}")]
    BadHardlink {
        id: Shown,
        target: Shown,
        why: String,
    },
    #[error("the stream is refused: item {id} has {count} attributes, more than the limit of {max}", max = MAX_ATTRIBUTES)]
    TooManyAttributes { id: Shown, count: usize },
    #[error("the stream is refused: item {id} has {bytes} bytes of attributes, more than the limit of {max}", max = MAX_ATTRIBUTE_BYTES)]
    AttributesTooLarge { id: Shown, bytes: usize },
    #[error("the stream is refused: at item {id}, its items' attributes pass {max} bytes in all", max = MAX_SNAPSHOT_ATTRIBUTE_BYTES)]
    SnapshotAttributesTooLarge { id: Shown },
    #[error("the stream is refused: item {id}: its {field} is {len} bytes long, more than the limit of {max}", max = MAX_FIELD_BYTES)]
    FieldTooLong {
        id: Shown,
        field: &'static str,
        len: usize,
    },
}

/// An id or other guest-chosen text as an error shows it: quoted, escaped,
/// and cut to 120 characters.
#[derive(Debug)]
pub(crate) struct Shown(String);

impl Shown {
    pub(crate) fn new(s: &str) -> Self {
        const KEEP: usize = 120;
        let mut out: String = s.chars().take(KEEP).collect();
        let n = s.chars().count();
        if n > KEEP {
            out.push_str(&format!("… ({n} characters)"));
        }
        Self(out)
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The rules' state over one stream: the ids stored so far (as hashes,
/// 16 bytes each) and what the warnings list has used.
#[derive(Default)]
pub(crate) struct IngestRules {
    /// Hashed with the blob maps' seeded foldhash, not SipHash: the keys
    /// are BLAKE3 digests already, and SipHash was 0.6% of a re-run's CPU.
    ids: HashSet<[u8; 16], crate::store::index::IdHash>,
    attribute_bytes: usize,
    warnings: usize,
    warning_bytes: usize,
    dropped: u64,
    dropped_bytes: u64,
}

fn attribute_bytes(r: &ItemRecord) -> usize {
    r.attributes.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn id_hash(id: &str) -> [u8; 16] {
    let h = blake3::hash(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

impl IngestRules {
    /// Checks an item as it opens: its id, that no stored item has it,
    /// its hard link target, attributes and text fields.
    pub(crate) fn item(&self, r: &ItemRecord) -> Result<(), Refused> {
        check_id(&r.id).map_err(|why| Refused::BadId {
            id: Shown::new(&r.id),
            why,
        })?;
        if self.ids.contains(&id_hash(&r.id)) {
            return Err(Refused::Duplicate {
                id: Shown::new(&r.id),
            });
        }
        if let Some(t) = &r.hardlink_target {
            check_id(t).map_err(|why| Refused::BadHardlink {
                id: Shown::new(&r.id),
                target: Shown::new(t),
                why,
            })?;
        }
        if r.attributes.len() > MAX_ATTRIBUTES {
            return Err(Refused::TooManyAttributes {
                id: Shown::new(&r.id),
                count: r.attributes.len(),
            });
        }
        let bytes = attribute_bytes(r);
        if bytes > MAX_ATTRIBUTE_BYTES {
            return Err(Refused::AttributesTooLarge {
                id: Shown::new(&r.id),
                bytes,
            });
        }
        for (field, v) in [
            ("symlink target", &r.symlink_target),
            ("change token", &r.change_token),
        ] {
            let len = v.as_ref().map_or(0, String::len);
            if len > MAX_FIELD_BYTES {
                return Err(Refused::FieldTooLong {
                    id: Shown::new(&r.id),
                    field,
                    len,
                });
            }
        }
        Ok(())
    }

    /// Notes that this item is stored: its id is taken, its attributes
    /// count towards the snapshot's.
    pub(crate) fn stored(&mut self, r: &ItemRecord) -> Result<(), Refused> {
        if !self.ids.insert(id_hash(&r.id)) {
            return Err(Refused::Duplicate {
                id: Shown::new(&r.id),
            });
        }
        self.attribute_bytes += attribute_bytes(r);
        if self.attribute_bytes > MAX_SNAPSHOT_ATTRIBUTE_BYTES {
            return Err(Refused::SnapshotAttributesTooLarge {
                id: Shown::new(&r.id),
            });
        }
        Ok(())
    }

    /// A warning as the snapshot records it: `None` once the list is full
    /// (it is then counted for [`IngestRules::summary`]). Ids and messages
    /// are cut to their bounds.
    pub(crate) fn warning(&mut self, n: Notice) -> Option<Warning> {
        let id = cut(n.id, MAX_ID_BYTES);
        let message = cut(n.message, MAX_WARNING_MESSAGE);
        let bytes = id.len() + message.len();
        if self.warnings >= MAX_WARNINGS || self.warning_bytes + bytes > MAX_WARNING_BYTES {
            self.dropped += 1;
            self.dropped_bytes += bytes as u64;
            return None;
        }
        self.warnings += 1;
        self.warning_bytes += bytes;
        Some(Warning { id, message })
    }

    /// The one warning that stands for those not recorded, if any.
    pub(crate) fn summary(&self) -> Option<Warning> {
        (self.dropped > 0).then(|| Warning {
            id: String::new(),
            message: format!(
                "{} more warnings ({} bytes) were not recorded: a snapshot keeps at most {MAX_WARNINGS} warnings and {MAX_WARNING_BYTES} bytes of them",
                self.dropped, self.dropped_bytes
            ),
        })
    }
}

/// `s` cut to at most `max` bytes at a character boundary, saying so.
pub(crate) fn cut(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut end = max.saturating_sub(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // A new string: truncating in place would keep the whole capacity.
    format!("{}… (cut from {total} bytes)", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_runner::stream::ItemKind;

    fn item(id: &str) -> ItemRecord {
        ItemRecord::new(id, ItemKind::File, 0)
    }

    #[test]
    fn bad_ids_are_refused_naming_the_rule() {
        let r = IngestRules::default();
        let long = format!("/{}", "a".repeat(100_000));
        for (id, rule) in [
            ("/../../etc/passwd", "'..' component"),
            ("x\0y", "NUL"),
            ("", "empty id"),
            (long.as_str(), "limit of 4096"),
        ] {
            let e = r.item(&item(id)).unwrap_err().to_string();
            assert!(e.contains(rule), "{id:.20?}: {e}");
            assert!(e.len() < 400, "the error stays short: {e}");
        }
    }

    #[test]
    fn duplicates_are_refused() {
        let mut r = IngestRules::default();
        r.item(&item("/a")).unwrap();
        r.stored(&item("/a")).unwrap();
        let e = r.item(&item("/a")).unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
        assert!(r.stored(&item("/a")).is_err());
    }

    #[test]
    fn attributes_are_bounded() {
        let r = IngestRules::default();
        let mut it = item("/a");
        it.attributes = vec![("k".into(), "v".into()); MAX_ATTRIBUTES + 1];
        assert!(matches!(
            r.item(&it),
            Err(Refused::TooManyAttributes { .. })
        ));
        it.attributes = vec![("k".into(), "v".repeat(MAX_ATTRIBUTE_BYTES))];
        assert!(matches!(
            r.item(&it),
            Err(Refused::AttributesTooLarge { .. })
        ));
        // Within bounds each, but not in all.
        let mut r = IngestRules::default();
        let n = MAX_SNAPSHOT_ATTRIBUTE_BYTES / (MAX_ATTRIBUTE_BYTES - 1) + 1;
        let e = (0..n)
            .map(|i| {
                let mut it = item(&format!("/{i}"));
                it.attributes = vec![("k".into(), "v".repeat(MAX_ATTRIBUTE_BYTES - 2))];
                r.item(&it).and_then(|()| r.stored(&it))
            })
            .find_map(Result::err);
        assert!(matches!(
            e,
            Some(Refused::SnapshotAttributesTooLarge { .. })
        ));
    }

    #[test]
    fn warnings_are_bounded_in_count_and_bytes() {
        let mut r = IngestRules::default();
        let mut kept = 0usize;
        let mut bytes = 0usize;
        for i in 0..100 {
            let n = Notice {
                id: format!("/w{i}"),
                message: "m".repeat(4 << 20),
            };
            if let Some(w) = r.warning(n) {
                assert!(w.message.len() <= MAX_WARNING_MESSAGE);
                kept += 1;
                bytes += w.id.len() + w.message.len();
            }
        }
        assert_eq!(kept, 100);
        assert!(bytes <= MAX_WARNING_BYTES);
        for i in 0..MAX_WARNINGS {
            r.warning(Notice {
                id: format!("/x{i}"),
                message: "m".into(),
            });
        }
        let s = r.summary().expect("a summary");
        assert!(s.message.contains("100 more warnings"), "{}", s.message);
    }

    #[test]
    fn cut_keeps_char_boundaries() {
        let s = cut("é".repeat(5000), 4096);
        assert!(s.len() <= 4096 + 40);
        assert!(s.capacity() < 8192, "the cut string holds no more memory");
        assert!(s.ends_with("(cut from 10000 bytes)"));
    }
}
