//! Where a blob's plain bytes are decoded to: a `Vec`, or a [`PlainBuf`],
//! which keeps a large chunk in an anonymous mapping of its own.
//!
//! Why (issue 12): a restore decodes chunks of up to 8 MiB on several
//! threads and hands them to the writer. Through glibc's allocator, the
//! first large buffer freed raises its mmap threshold, and from then on
//! such buffers come from per-thread arenas, which keep what is freed: a
//! restore of a 25,519-item tree peaked at 96 MiB, and at 84 MiB with the
//! threshold held (`MALLOC_MMAP_THRESHOLD_`, which a program cannot set
//! for itself without unsafe code). A mapping is returned to the kernel
//! when dropped. Small chunks (the files of a source tree, mostly) stay on
//! the heap, where a mapping per chunk would cost a system call each.

use std::ops::Deref;

/// Chunks larger than this are decoded into a mapping of their own.
const MAPPED_FROM: usize = 256 << 10;
/// What a buffer is rounded up to, so that it fits a few more chunks when
/// reused without holding much more than this one.
const ROUND: usize = 64 << 10;

/// Where [`super::blob::decode_into`] puts a blob's plain bytes.
pub(crate) trait Plain {
    /// Emptied, with room for at least `need` bytes.
    fn reset(&mut self, need: usize) -> std::io::Result<()>;
    /// Appends `b`, which fits the room made.
    fn put(&mut self, b: &[u8]);
    /// Decompresses `src` into the room made.
    fn unzstd(
        &mut self,
        d: &mut zstd::bulk::Decompressor<'static>,
        src: &[u8],
    ) -> std::io::Result<()>;
    /// The bytes held.
    fn bytes(&self) -> &[u8];
}

/// `need` rounded up to whole [`ROUND`]s (at least one).
fn rounded(need: usize) -> usize {
    need.div_ceil(ROUND).max(1) * ROUND
}

impl Plain for Vec<u8> {
    fn reset(&mut self, need: usize) -> std::io::Result<()> {
        self.clear();
        // Replaced, not grown (which would copy its old bytes).
        if self.capacity() < need {
            *self = Vec::with_capacity(rounded(need));
        }
        Ok(())
    }

    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }

    fn unzstd(
        &mut self,
        d: &mut zstd::bulk::Decompressor<'static>,
        src: &[u8],
    ) -> std::io::Result<()> {
        d.decompress_to_buffer(src, self).map(drop)
    }

    fn bytes(&self) -> &[u8] {
        self
    }
}

/// A buffer for one chunk's plain bytes: on the heap when small, in an
/// anonymous mapping when large.
pub(crate) enum PlainBuf {
    Heap(Vec<u8>),
    Mapped { map: memmap2::MmapMut, len: usize },
}

impl Default for PlainBuf {
    fn default() -> Self {
        Self::Heap(Vec::new())
    }
}

impl PlainBuf {
    /// The bytes it can hold without being replaced.
    pub(crate) fn capacity(&self) -> usize {
        match self {
            Self::Heap(v) => v.capacity(),
            Self::Mapped { map, .. } => map.len(),
        }
    }
}

impl Deref for PlainBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Heap(v) => v,
            Self::Mapped { map, len } => &map[..*len],
        }
    }
}

impl Plain for PlainBuf {
    fn reset(&mut self, need: usize) -> std::io::Result<()> {
        // Replaced only when too small: a mapping that fits serves a small
        // chunk as well as a large one.
        if self.capacity() < need {
            *self = if need <= MAPPED_FROM {
                Self::Heap(Vec::with_capacity(rounded(need)))
            } else {
                Self::Mapped {
                    map: memmap2::MmapMut::map_anon(rounded(need))?,
                    len: 0,
                }
            };
        }
        match self {
            Self::Heap(v) => v.clear(),
            Self::Mapped { len, .. } => *len = 0,
        }
        Ok(())
    }

    fn put(&mut self, b: &[u8]) {
        match self {
            Self::Heap(v) => v.extend_from_slice(b),
            Self::Mapped { map, len } => {
                map[*len..*len + b.len()].copy_from_slice(b);
                *len += b.len();
            }
        }
    }

    fn unzstd(
        &mut self,
        d: &mut zstd::bulk::Decompressor<'static>,
        src: &[u8],
    ) -> std::io::Result<()> {
        match self {
            Self::Heap(v) => v.unzstd(d, src),
            Self::Mapped { map, len } => {
                *len = d.decompress_to_buffer(src, &mut map[..])?;
                Ok(())
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small chunks stay on the heap, large ones get a mapping; either
    /// holds exactly what was put or decompressed, and is reused while it
    /// fits.
    #[test]
    fn small_on_the_heap_large_in_a_mapping() {
        let mut b = PlainBuf::default();
        b.reset(1000).unwrap();
        b.put(b"abc");
        b.put(b"de");
        assert!(matches!(b, PlainBuf::Heap(_)));
        assert_eq!(&*b, b"abcde");

        let big: Vec<u8> = (0..(1 << 20) + 7).map(|i| (i % 251) as u8).collect();
        b.reset(big.len()).unwrap();
        assert!(matches!(b, PlainBuf::Mapped { .. }));
        assert_eq!(b.capacity(), rounded(big.len()));
        b.put(&big);
        assert_eq!(&*b, &big[..]);

        // Reused for a smaller large chunk, through zstd.
        let z = zstd::bulk::compress(&big[..600_000], 3).unwrap();
        let mut d = zstd::bulk::Decompressor::new().unwrap();
        b.reset(600_000).unwrap();
        b.unzstd(&mut d, &z).unwrap();
        assert_eq!(b.capacity(), rounded(big.len()));
        assert_eq!(b.bytes(), &big[..600_000]);

        // A small one after it still fits, and is emptied.
        b.reset(10).unwrap();
        assert!(matches!(b, PlainBuf::Mapped { .. }));
        assert!(b.is_empty());
        b.put(b"xyz");
        assert_eq!(&*b, b"xyz");
        // A fresh small one is on the heap.
        let mut h = PlainBuf::default();
        h.reset(MAPPED_FROM).unwrap();
        assert!(matches!(h, PlainBuf::Heap(_)));
        // And too little room for zstd's output is an error, not a panic.
        let mut small = PlainBuf::default();
        small.reset(MAPPED_FROM + 1).unwrap();
        let z = zstd::bulk::compress(&big, 3).unwrap();
        assert!(small.unzstd(&mut d, &z).is_err());
    }
}
