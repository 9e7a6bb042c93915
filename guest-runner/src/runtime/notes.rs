//! What a restore reports per item (items refused, items the plugin could
//! not restore), held within bounds: a restore that fails for every one of
//! a million files (a full disk) kept a million messages, and the host
//! printed them all in one 41 MB error. The first [`MAX_NOTES`] notes, and
//! at most [`MAX_NOTE_BYTES`] of them, each message cut to
//! [`MAX_NOTE_MESSAGE`] bytes, are kept; the rest are only counted. The
//! bounds are a backup's own for its warnings (the host's
//! `ingest_rules`).

/// Notes kept.
pub(crate) const MAX_NOTES: usize = 10_000;
/// Bytes of ids and messages kept.
pub(crate) const MAX_NOTE_BYTES: usize = 1 << 20;
/// Bytes kept of one message.
pub(crate) const MAX_NOTE_MESSAGE: usize = 4096;
/// Bytes kept of one id.
const MAX_NOTE_ID: usize = 4096;

/// Notes on items, as (id, message), within bounds.
#[derive(Debug, Default, Clone)]
pub struct Notes {
    kept: Vec<(String, String)>,
    bytes: usize,
    dropped: u64,
}

impl Notes {
    /// Records a note; past the bounds it is only counted.
    pub fn push(&mut self, id: String, message: String) {
        let id = cut(id, MAX_NOTE_ID);
        let message = cut(message, MAX_NOTE_MESSAGE);
        let bytes = id.len() + message.len();
        if self.kept.len() >= MAX_NOTES || self.bytes + bytes > MAX_NOTE_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += bytes;
        self.kept.push((id, message));
    }

    /// The notes kept, in the order recorded.
    pub fn kept(&self) -> &[(String, String)] {
        &self.kept
    }

    /// Notes recorded beyond the bounds, not kept.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Every note recorded, kept or not.
    pub fn total(&self) -> u64 {
        self.kept.len() as u64 + self.dropped
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// `s` cut to at most `max` bytes, on a character boundary, as a new
/// string: truncating in place would keep the whole capacity, and a plugin
/// that warns with 100 MB messages would make the bound on bytes kept no
/// bound on memory (the host's `ingest_rules::cut` does the same).
fn cut(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_count_notes_are_counted_not_kept() {
        let mut n = Notes::default();
        for i in 0..MAX_NOTES + 5 {
            n.push(format!("/f{i}"), "No space left on device".into());
        }
        assert_eq!(n.kept().len(), MAX_NOTES);
        assert_eq!(n.dropped(), 5);
        assert_eq!(n.total(), (MAX_NOTES + 5) as u64);
        assert_eq!(n.kept()[0].0, "/f0");
    }

    #[test]
    fn past_the_bytes_notes_are_counted_not_kept() {
        let mut n = Notes::default();
        let long = "é".repeat(MAX_NOTE_MESSAGE); // 2 bytes each: cut
        for i in 0..1000 {
            n.push(format!("/f{i}"), long.clone());
        }
        let kept: usize = n.kept().iter().map(|(i, m)| i.len() + m.len()).sum();
        assert!(kept <= MAX_NOTE_BYTES, "{kept}");
        assert!(n.kept().iter().all(|(_, m)| m.len() <= MAX_NOTE_MESSAGE));
        assert!(n
            .kept()
            .iter()
            .all(|(_, m)| m.capacity() < 2 * MAX_NOTE_MESSAGE));
        assert!(n.dropped() > 0);
        assert_eq!(n.total(), 1000);
    }

    #[test]
    fn none_is_empty() {
        assert!(Notes::default().is_empty());
        let mut n = Notes::default();
        n.push("/a".into(), "x".into());
        assert!(!n.is_empty());
    }
}
