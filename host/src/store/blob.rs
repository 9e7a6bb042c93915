//! A blob as stored in a pack: a flag byte (raw or zstd) and the payload,
//! sealed as a whole.

use super::crypto::{BlobId, Cipher};
use super::StoreError;

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// zstd level: 3 compresses text well at several hundred MB/s a core.
const LEVEL: i32 = 3;

/// A blob ready for a pack.
pub(crate) struct Encoded {
    pub id: BlobId,
    pub raw_len: u32,
    pub bytes: Vec<u8>,
}

/// How much of a large blob is test-compressed to decide whether to try.
const SAMPLE: usize = 64 << 10;

/// Most bytes of a small blob whose byte histogram judges it: pieces of
/// [`PIECE`] bytes spread evenly over it. Counting every byte of every
/// blob was a tenth of the encoders' time on a source tree (issue 12),
/// and a sample tells random bytes from text as well.
const HISTOGRAM: usize = 16 << 10;
const PIECE: usize = 4 << 10;

/// Order-0 entropy, in bits per byte, of the bytes `parts` hold together.
fn entropy<'a>(parts: impl Iterator<Item = &'a [u8]>) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0usize;
    for b in parts {
        n += b.len();
        for &x in b {
            counts[x as usize] += 1;
        }
    }
    let n = n as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// At most [`HISTOGRAM`] bytes of `b`: all of it, or pieces spread evenly.
fn histogram_sample(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let pieces = if b.len() <= HISTOGRAM {
        1
    } else {
        HISTOGRAM / PIECE
    };
    let (len, step) = if pieces == 1 {
        (b.len(), 0)
    } else {
        (PIECE, (b.len() - PIECE) / (pieces - 1))
    };
    (0..pieces).map(move |i| &b[i * step..i * step + len])
}

/// Whether compressing looks worth it: random or already compressed data
/// (media, archives) is stored as it is without spending a full pass. Small
/// blobs are judged by the byte entropy of a sample (a histogram costs far
/// less than a compression attempt), large ones by test-compressing a
/// sample.
fn worth_compressing(plain: &[u8]) -> bool {
    if plain.len() <= 2 * SAMPLE {
        // Random bytes measure close to 8 bits (a little less on short
        // inputs); text and tables far below.
        let limit = if plain.len() >= 4096 { 7.5 } else { 7.0 };
        return plain.len() < 512 || entropy(histogram_sample(plain)) < limit;
    }
    let mid = plain.len() / 2 - SAMPLE / 2;
    let sample = &plain[mid..mid + SAMPLE];
    compress(sample, 1).is_ok_and(|c| c.len() < SAMPLE - SAMPLE / 16)
}

/// zstd at `level` with a compression context each thread keeps per level:
/// making one per blob cost as much as compressing a small blob.
fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static CCTX: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    CCTX.with_borrow_mut(|all| {
        let i = match all.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                all.push((level, zstd::bulk::Compressor::new(level)?));
                all.len() - 1
            }
        };
        all[i].1.compress(data)
    })
}

/// Compresses (when it pays) and seals `plain`.
#[cfg(test)]
pub(crate) fn encode(cipher: &Cipher, plain: &[u8]) -> Result<Encoded, StoreError> {
    encode_with_id(cipher, cipher.id(plain), plain)
}

/// [`encode`] for a plaintext whose id is known.
pub(crate) fn encode_with_id(
    cipher: &Cipher,
    id: BlobId,
    plain: &[u8],
) -> Result<Encoded, StoreError> {
    let compressed = if worth_compressing(plain) {
        Some(compress(plain, LEVEL).map_err(StoreError::Io)?)
    } else {
        None
    };
    let raw_len =
        u32::try_from(plain.len()).map_err(|_| StoreError::Corrupt("blob too large".into()))?;
    let bytes = match compressed {
        Some(c) if c.len() + c.len() / 32 < plain.len() => cipher.seal_parts(ZSTD, &c)?,
        _ => cipher.seal_parts(RAW, plain)?,
    };
    Ok(Encoded { id, raw_len, bytes })
}

/// What a buffer for a blob's plain bytes is rounded up to.
const ROUND: usize = 64 << 10;

/// Opens and decompresses a stored blob and checks it against its id.
pub(crate) fn decode(
    cipher: &Cipher,
    id: &BlobId,
    raw_len: u32,
    bytes: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut plain = Vec::new();
    decode_into(cipher, id, raw_len, &mut bytes.to_vec(), &mut plain)?;
    Ok(plain)
}

/// [`decode`] into `plain` (emptied first, its memory reused), decrypting
/// `sealed` in place.
pub(crate) fn decode_into(
    cipher: &Cipher,
    id: &BlobId,
    raw_len: u32,
    sealed: &mut [u8],
    plain: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let damaged = |why: String| StoreError::Damaged { blob: *id, why };
    let body = cipher
        .open_in_place(sealed)
        .map_err(|e| damaged(e.to_string()))?;
    let body = &sealed[body];
    plain.clear();
    // A buffer too small is replaced, not grown (which would copy its old
    // bytes), by one rounded up to whole 64 KiB, so that it fits a few
    // more chunks when reused without holding much more than this one
    // (a power of two held up to twice the bytes of a restore in flight).
    let need = match body.first() {
        Some(&ZSTD) => raw_len as usize,
        _ => body.len(),
    };
    if plain.capacity() < need {
        *plain = Vec::with_capacity(need.div_ceil(ROUND).max(1) * ROUND);
    }
    match body.split_first() {
        Some((&RAW, p)) => plain.extend_from_slice(p),
        Some((&ZSTD, p)) => {
            // One decompression context per thread, not one per blob.
            thread_local! {
                static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            DCTX.with_borrow_mut(|d| {
                let d = match d {
                    Some(d) => d,
                    None => d.insert(zstd::bulk::Decompressor::new().map_err(StoreError::Io)?),
                };
                d.decompress_to_buffer(p, plain)
                    .map_err(|e| damaged(format!("decompression failed: {e}")))
            })?;
            // The buffer may be larger than this blob needs.
            if plain.len() > raw_len as usize {
                return Err(damaged(format!(
                    "decompressed to {} bytes, more than its {raw_len}",
                    plain.len()
                )));
            }
        }
        _ => return Err(damaged("unknown encoding".into())),
    }
    if cipher.id(plain) != *id {
        return Err(damaged("content does not match its id".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypto::MasterKey;

    #[test]
    fn round_trips_and_compresses_text() {
        for cipher in [
            Cipher::None,
            Cipher::new(Some(&MasterKey::random().unwrap())),
        ] {
            let text = b"the same line again\n".repeat(1000);
            let e = encode(&cipher, &text).unwrap();
            assert!(e.bytes.len() < text.len() / 10);
            assert_eq!(decode(&cipher, &e.id, e.raw_len, &e.bytes).unwrap(), text);
            let mut noise = vec![0u8; 4096];
            crate::store::crypto::random(&mut noise).unwrap();
            let e = encode(&cipher, &noise).unwrap();
            assert_eq!(decode(&cipher, &e.id, e.raw_len, &e.bytes).unwrap(), noise);
        }
    }

    #[test]
    fn judges_compressibility_cheaply() {
        let mut noise = vec![0u8; 16384];
        crate::store::crypto::random(&mut noise).unwrap();
        assert!(!worth_compressing(&noise));
        assert!(!worth_compressing(&noise[..2000]));
        assert!(worth_compressing(
            b"{\"id\": \"/srv/www/index.html\", \"kind\": \"file\"}\n"
                .repeat(100)
                .as_slice()
        ));
        assert!(worth_compressing(&vec![7u8; 300_000]));
        // Blobs above the histogram's sample are judged by pieces of them,
        // at every size up to where the test compression takes over.
        let mut big = vec![0u8; 2 * SAMPLE];
        crate::store::crypto::random(&mut big).unwrap();
        let text = b"fn main() { println!(\"hello\"); }\n".repeat(4000);
        for len in [
            HISTOGRAM,
            HISTOGRAM + 1,
            HISTOGRAM + PIECE + 3,
            100_000,
            2 * SAMPLE,
        ] {
            let sample: usize = histogram_sample(&big[..len]).map(<[u8]>::len).sum();
            assert!(sample <= HISTOGRAM, "{len}: {sample}");
            assert!(!worth_compressing(&big[..len]), "{len}");
            assert!(worth_compressing(&text[..len]), "{len}");
        }
        // Noise repeated is compressible, and the sample test sees it.
        assert!(worth_compressing(&noise.repeat(9)));
    }

    #[test]
    fn a_reused_buffer_holds_exactly_each_blob() {
        let cipher = Cipher::new(Some(&MasterKey::random().unwrap()));
        let mut noise = vec![0u8; 200_000];
        crate::store::crypto::random(&mut noise).unwrap();
        let text = b"a line of mail\r\n".repeat(20_000);
        let short = b"short".to_vec();
        // Large then small, compressed and raw: what a buffer held before,
        // and its larger capacity, never show in the next blob.
        let mut plain = Vec::new();
        for want in [&noise, &text, &short, &noise[..1000].to_vec(), &text] {
            let e = encode(&cipher, want).unwrap();
            decode_into(&cipher, &e.id, e.raw_len, &mut e.bytes.clone(), &mut plain).unwrap();
            assert_eq!(&plain, want);
        }
        // A compressed blob whose recorded size is smaller than what it
        // decompresses to is damage, even when the buffer is large enough.
        let e = encode(&cipher, &text).unwrap();
        let mut big = Vec::with_capacity(1 << 20);
        let r = decode_into(
            &cipher,
            &e.id,
            e.raw_len - 1,
            &mut e.bytes.clone(),
            &mut big,
        );
        assert!(matches!(r, Err(StoreError::Damaged { .. })), "{r:?}");
        // A changed byte fails authentication in place.
        let mut bad = e.bytes.clone();
        bad[40] ^= 1;
        assert!(matches!(
            decode_into(&cipher, &e.id, e.raw_len, &mut bad, &mut plain),
            Err(StoreError::Damaged { .. })
        ));
    }

    #[test]
    fn damage_is_detected_even_unencrypted() {
        let e = encode(&Cipher::None, b"plain content here").unwrap();
        let mut bad = e.bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            decode(&Cipher::None, &e.id, e.raw_len, &bad),
            Err(StoreError::Damaged { .. })
        ));
    }
}
