//! Counting what a backup or restore did in a [`Summary`].

use crate::Summary;

impl Default for Summary {
    /// No items, no bytes, no warnings.
    fn default() -> Self {
        Summary {
            items: 0,
            bytes: 0,
            warnings: 0,
        }
    }
}

impl Summary {
    /// Counts one more item of `bytes` bytes.
    pub fn item(mut self, bytes: u64) -> Self {
        self.add(bytes);
        self
    }

    /// Counts one more item of `bytes` bytes, in place.
    pub fn add(&mut self, bytes: u64) {
        self.items += 1;
        self.bytes += bytes;
    }

    /// Counts one more item skipped with a warning, in place.
    pub fn warned(&mut self) {
        self.warnings += 1;
    }
}
