//! Content-defined chunking with FastCDC (v2020), fed piece by piece: the
//! cut points depend only on content, so an insertion shifts no chunk but the
//! one it lands in, and unchanged data dedups across files and snapshots.

use serde::{Deserialize, Serialize};

/// Chunk size bounds in bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Params {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for Params {
    /// 512 KiB / 1 MiB / 8 MiB, as restic uses.
    fn default() -> Self {
        Self {
            min: 512 << 10,
            avg: 1 << 20,
            max: 8 << 20,
        }
    }
}

/// Cuts a stream of pieces into chunks.
pub struct Chunker {
    p: Params,
    buf: Vec<u8>,
}

impl Chunker {
    pub fn new(p: Params) -> Self {
        // Sized once for the most it holds, so it never doubles past it.
        Self {
            p,
            buf: Vec::with_capacity(2 * p.max as usize + (1 << 20)),
        }
    }

    /// Adds a piece; calls `out` for every chunk that is complete.
    pub fn push<E>(
        &mut self,
        piece: &[u8],
        out: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.buf.extend_from_slice(piece);
        // Cut only once enough is buffered that the last cut found is not
        // merely where the buffer ends.
        if self.buf.len() < 2 * self.p.max as usize {
            return Ok(());
        }
        let mut consumed = 0;
        let cuts: Vec<(usize, usize)> =
            fastcdc::v2020::FastCDC::new(&self.buf, self.p.min, self.p.avg, self.p.max)
                .map(|c| (c.offset, c.length))
                .collect();
        for (off, len) in &cuts[..cuts.len().saturating_sub(1)] {
            out(&self.buf[*off..off + len])?;
            consumed = off + len;
        }
        self.buf.drain(..consumed);
        Ok(())
    }

    /// Emits what remains at the end of an item.
    pub fn finish<E>(&mut self, out: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let cuts: Vec<(usize, usize)> =
            fastcdc::v2020::FastCDC::new(&self.buf, self.p.min, self.p.avg, self.p.max)
                .map(|c| (c.offset, c.length))
                .collect();
        for (off, len) in cuts {
            out(&self.buf[off..off + len])?;
        }
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let p = Params {
            min: 4096,
            avg: 16384,
            max: 65536,
        };
        let mut c = Chunker::new(p);
        let mut out = Vec::new();
        let mut f = |b: &[u8]| -> Result<(), ()> {
            out.push(b.to_vec());
            Ok(())
        };
        for part in data.chunks(piece) {
            c.push(part, &mut f).unwrap();
        }
        c.finish(&mut f).unwrap();
        out
    }

    #[test]
    fn cuts_do_not_depend_on_how_data_arrives() {
        let mut data = vec![0u8; 1 << 20];
        crate::store::crypto::random(&mut data).unwrap();
        let a = chunks(&data, 1000);
        let b = chunks(&data, 1 << 20);
        assert_eq!(a, b);
        assert_eq!(a.concat(), data);
        assert!(a.len() > 20);
    }

    #[test]
    fn an_insertion_changes_few_chunks() {
        let mut data = vec![0u8; 1 << 20];
        crate::store::crypto::random(&mut data).unwrap();
        let before = chunks(&data, 65536);
        data.splice(500_000..500_000, b"inserted".iter().copied());
        let after = chunks(&data, 65536);
        let same = after.iter().filter(|c| before.contains(c)).count();
        assert!(
            same + 3 >= after.len(),
            "{same} of {} unchanged",
            after.len()
        );
    }
}
