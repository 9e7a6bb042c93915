//! Content-defined chunking with FastCDC (v2020, normalization level 1), fed
//! piece by piece: the cut points depend only on content (and, in a keyed
//! repository, on the key's gear table), so an insertion shifts no chunk but
//! the one it lands in, and unchanged data dedups across files and snapshots.
//!
//! The cut-point search is the `fastcdc` crate's own (`cut_gear`), given the
//! repository's [`Gear`] table: with the standard table the cuts are exactly
//! those of `fastcdc::v2020::FastCDC`, so repositories made before keyed
//! chunking keep deduplicating against their data.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::gear::Gear;

/// Chunk size bounds in bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Params {
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

/// Smallest `min` a repository may ask for: smaller chunks only bloat the
/// index and reveal more about the content.
pub(crate) const MIN_MIN: u32 = 16 << 10;
/// Smallest and largest `avg`.
pub(crate) const AVG_RANGE: (u32, u32) = (64 << 10, 4 << 20);
/// Largest `max`: a chunk is held whole in memory (twice, while cutting).
pub(crate) const MAX_MAX: u32 = 16 << 20;

impl Params {
    /// Whether these bounds are sane: `MIN_MIN <= min < avg < max <= MAX_MAX`
    /// and `avg` within [`AVG_RANGE`]. Config files are checked with it.
    pub(crate) fn check(&self) -> Result<(), String> {
        let Self { min, avg, max } = *self;
        if min < MIN_MIN {
            return Err(format!(
                "chunker min {min} is below {MIN_MIN} bytes (absurdly small chunks)"
            ));
        }
        if !(AVG_RANGE.0..=AVG_RANGE.1).contains(&avg) {
            return Err(format!(
                "chunker avg {avg} is outside {}..={} bytes",
                AVG_RANGE.0, AVG_RANGE.1
            ));
        }
        if max > MAX_MAX {
            return Err(format!("chunker max {max} is above {MAX_MAX} bytes"));
        }
        if !(min < avg && avg < max) {
            return Err(format!(
                "chunker sizes are out of order: need min {min} < avg {avg} < max {max}"
            ));
        }
        Ok(())
    }
}

/// The masks FastCDC level 1 uses for `avg`, with the number of bits kept in
/// the table's range whatever `avg` is (so no bounds can panic here).
fn masks(avg: u32) -> (u64, u64) {
    let bits = fastcdc::v2020::logarithm2(avg.max(1)).clamp(7, 24) as usize;
    let m = &fastcdc::v2020::MASKS;
    (m[bits + 1], m[bits - 1])
}

/// Cuts a stream of pieces into chunks.
pub(crate) struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Arc<Gear>,
    buf: Vec<u8>,
}

impl Chunker {
    /// A chunker with the given gear table. Nonsensical bounds are clamped
    /// (max to 128..=[`MAX_MAX`], min to 64..max): the chunker never panics
    /// nor allocates more than a few `MAX_MAX`, whatever `p` holds; configs
    /// are refused earlier by [`Params::check`].
    pub(crate) fn with_gear(p: Params, gear: Arc<Gear>) -> Self {
        let max = (p.max as usize).clamp(128, MAX_MAX as usize);
        let min = (p.min as usize).clamp(64, max - 1);
        let avg = (p.avg as usize).clamp(min, max);
        let (mask_s, mask_l) = masks(avg as u32);
        // Sized once for the most it holds, so it never doubles past it.
        Self {
            min,
            avg,
            max,
            mask_s,
            mask_l,
            gear,
            buf: Vec::with_capacity(2 * max + (1 << 20)),
        }
    }

    /// Where the next chunk of `data` ends.
    fn cut(&self, data: &[u8]) -> usize {
        let (_, n) = fastcdc::v2020::cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear.gear,
            &self.gear.gear_ls,
        );
        n.clamp(1, data.len())
    }

    /// The chunk bounds of the buffer, as (offset, length).
    fn cuts(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < self.buf.len() {
            let n = self.cut(&self.buf[off..]);
            out.push((off, n));
            off += n;
        }
        out
    }

    /// Adds a piece; calls `out` for every chunk that is complete.
    pub(crate) fn push<E>(
        &mut self,
        piece: &[u8],
        out: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.buf.extend_from_slice(piece);
        // Cut only once enough is buffered that the last cut found is not
        // merely where the buffer ends.
        if self.buf.len() < 2 * self.max {
            return Ok(());
        }
        let mut consumed = 0;
        let cuts = self.cuts();
        for (off, len) in &cuts[..cuts.len().saturating_sub(1)] {
            out(&self.buf[*off..off + len])?;
            consumed = off + len;
        }
        self.buf.drain(..consumed);
        Ok(())
    }

    /// Emits what remains at the end of an item.
    pub(crate) fn finish<E>(
        &mut self,
        out: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for (off, len) in self.cuts() {
            out(&self.buf[off..off + len])?;
        }
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Params = Params {
        min: 4096,
        avg: 16384,
        max: 65536,
    };

    fn chunks_with(data: &[u8], piece: usize, p: Params, gear: Arc<Gear>) -> Vec<Vec<u8>> {
        let mut c = Chunker::with_gear(p, gear);
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

    fn chunks(data: &[u8], piece: usize) -> Vec<Vec<u8>> {
        chunks_with(data, piece, SMALL, Gear::standard())
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut data = vec![0u8; n];
        getrandom::fill(&mut data).unwrap();
        data
    }

    #[test]
    fn cuts_do_not_depend_on_how_data_arrives() {
        let data = noise(1 << 20);
        let a = chunks(&data, 1000);
        let b = chunks(&data, 1 << 20);
        assert_eq!(a, b);
        assert_eq!(a.concat(), data);
        assert!(a.len() > 20);
    }

    #[test]
    fn unkeyed_cuts_are_the_fastcdc_crates() {
        let data = noise(3 << 20);
        let ours: Vec<usize> = chunks(&data, 3 << 20).iter().map(Vec::len).collect();
        let theirs: Vec<usize> =
            fastcdc::v2020::FastCDC::new(&data, SMALL.min, SMALL.avg, SMALL.max)
                .map(|c| c.length)
                .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn keyed_cuts_depend_on_the_key() {
        let data = noise(2 << 20);
        let a = chunks_with(&data, 4096, SMALL, Gear::keyed(&[1; 32]));
        let b = chunks_with(&data, 4096, SMALL, Gear::keyed(&[2; 32]));
        let plain = chunks(&data, 4096);
        assert_eq!(a.concat(), data);
        assert_eq!(b.concat(), data);
        let shared = a.iter().filter(|c| b.contains(c)).count();
        assert!(shared <= 1, "{shared} of {} chunks shared", a.len());
        assert!(a.iter().filter(|c| plain.contains(c)).count() <= 1);
    }

    #[test]
    fn an_insertion_changes_few_chunks() {
        let mut data = noise(1 << 20);
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

    #[test]
    fn absurd_bounds_never_panic_and_are_refused_by_check() {
        let data = noise(300_000);
        for p in [
            Params {
                min: 0,
                avg: 1,
                max: 1,
            },
            Params {
                min: 64,
                avg: 256,
                max: 1024,
            },
            Params {
                min: u32::MAX,
                avg: 0,
                max: 3,
            },
        ] {
            let c = chunks_with(&data, 7000, p, Gear::standard());
            assert_eq!(c.concat(), data);
            assert!(p.check().is_err(), "{p:?}");
        }
        assert!(Params::default().check().is_ok());
        assert!(Params {
            min: 1 << 20,
            avg: 1 << 20,
            max: 8 << 20
        }
        .check()
        .is_err());
    }
}
