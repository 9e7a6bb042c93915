//! Pack files: many blobs in one file, so a large backup is not millions of
//! tiny files. Layout: the file header ([`header::PACK`]: magic `attpack`
//! and version 1), the sealed blobs back to back, then a sealed header
//! listing them, then the header's length as a little-endian u32. Packs
//! written before the file header existed (version 0) start with their first
//! blob and still read; blob offsets are from the start of the file in both.
//! A pack is
//! named by the BLAKE3 of its bytes and written whole and create-only
//! ([`backend::put_content`]), so a pack either exists complete or not at
//! all, and is never replaced by another's.

use serde::{Deserialize, Serialize};

use super::backend::{self, Backend};
use super::blob::Encoded;
use super::crypto::{BlobId, Cipher};
use super::header;
use super::StoreError;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BlobKind {
    /// A chunk of item content.
    Data,
    /// A snapshot's item list.
    Tree,
}

/// One blob's place in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PackedBlob {
    pub id: BlobId,
    pub kind: BlobKind,
    pub offset: u64,
    pub len: u32,
    pub raw_len: u32,
}

/// A pack's id: BLAKE3 of the whole file.
pub(crate) type PackId = BlobId;

/// Target size of a pack: large enough that a big backup is not a flood of
/// files, small enough that a pack in memory costs little.
pub(crate) const PACK_SIZE: usize = 8 << 20;

/// The key of a pack: `data/XX/ID`.
pub(crate) fn pack_key(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

/// A pack being filled in memory.
pub(crate) struct PackWriter {
    bytes: Vec<u8>,
    blobs: Vec<PackedBlob>,
}

impl Default for PackWriter {
    fn default() -> Self {
        // Room for a full pack, its largest last chunk and the header, so
        // the buffer never doubles past what it needs.
        let mut bytes = Vec::with_capacity(PACK_SIZE + (8 << 20) + (64 << 10));
        bytes.extend_from_slice(&header::PACK.bytes());
        Self {
            bytes,
            blobs: Vec::new(),
        }
    }
}

impl PackWriter {
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub(crate) fn add(&mut self, kind: BlobKind, e: Encoded) {
        let len = e.bytes.len() as u32;
        self.blobs.push(PackedBlob {
            id: e.id,
            kind,
            offset: self.bytes.len() as u64,
            len,
            raw_len: e.raw_len,
        });
        self.bytes.extend_from_slice(&e.bytes);
    }

    /// Writes the pack durably and returns its id and blobs.
    pub(crate) fn finish(
        mut self,
        b: &dyn Backend,
        cipher: &Cipher,
    ) -> Result<(PackId, Vec<PackedBlob>), StoreError> {
        self.finish_and_reuse(b, cipher)
    }

    /// [`finish`](Self::finish), leaving an empty writer that keeps its
    /// buffer for the next pack: a fresh one for every pack is tens of
    /// MiB of pages to fault in again (issue 12). Whatever happens, the
    /// writer is empty afterwards.
    pub(crate) fn finish_and_reuse(
        &mut self,
        b: &dyn Backend,
        cipher: &Cipher,
    ) -> Result<(PackId, Vec<PackedBlob>), StoreError> {
        let sealed = self.seal(cipher);
        let stored = match &sealed {
            Ok((id, _)) => self.store_sealed(b, id),
            Err(_) => Ok(()),
        };
        self.reset();
        stored?;
        sealed
    }

    /// Closes the pack in memory: appends its sealed header and returns
    /// its id and blobs. The sealed bytes stay until [`reset`](Self::reset),
    /// for [`store_sealed`](Self::store_sealed), which may run on another
    /// thread while the next pack fills (`pack_set`). On an error the
    /// writer is reset.
    pub(crate) fn seal(
        &mut self,
        cipher: &Cipher,
    ) -> Result<(PackId, Vec<PackedBlob>), StoreError> {
        let blobs = std::mem::take(&mut self.blobs);
        let header = match compress_json(&blobs).and_then(|h| cipher.seal(&h)) {
            Ok(h) => h,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        self.bytes.extend_from_slice(&header);
        self.bytes
            .extend_from_slice(&(header.len() as u32).to_le_bytes());
        Ok((BlobId(*blake3::hash(&self.bytes).as_bytes()), blobs))
    }

    /// Writes a pack closed by [`seal`](Self::seal) durably, create-only,
    /// under its id.
    pub(crate) fn store_sealed(&self, b: &dyn Backend, id: &PackId) -> Result<(), StoreError> {
        backend::put_content(b, &pack_key(id), &self.bytes)
    }

    /// Empties the writer, keeping its buffer.
    pub(crate) fn reset(&mut self) {
        self.blobs.clear();
        self.bytes.truncate(header::PACK.bytes().len());
    }
}

/// Reads one blob's stored bytes into the start of `buf` (its memory
/// reused) and returns them; a pack too short for it is named, with what
/// is wrong (not "failed to fill whole buffer"). `buf` only grows: what it
/// held is overwritten by the read, so only new room is zeroed (a restore
/// reads every chunk through one buffer, and zeroing each first was a
/// pass over every byte restored).
pub(crate) fn read_blob_into<'b>(
    b: &dyn Backend,
    pack: &PackId,
    offset: u64,
    len: u32,
    buf: &'b mut Vec<u8>,
) -> Result<&'b mut [u8], StoreError> {
    let key = pack_key(pack);
    let want = len as usize;
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let slot = &mut buf[..want];
    let got = b.read_at(&key, offset, slot)?;
    if got < want {
        let end = offset.saturating_add(u64::from(len));
        // Its size now: a pack truncated is damage, named as such.
        let size = b.size(&key)?.unwrap_or(0);
        return Err(StoreError::damaged(
            &b.name(&key),
            format!(
                "pack is truncated: a blob at bytes {offset}..{end} lies past its end ({size} bytes)"
            ),
        ));
    }
    Ok(slot)
}

/// Largest pack header accepted (compressed, sealed): a full pack of the
/// smallest chunks lists a few thousand blobs.
pub(crate) const MAX_HEADER: usize = 16 << 20;

/// Parses the header at the end of a pack's bytes: the blobs it holds, each
/// checked to lie inside the pack, between its file header (if it has one)
/// and the header at its end.
pub(crate) fn read_header(cipher: &Cipher, bytes: &[u8]) -> Result<Vec<PackedBlob>, StoreError> {
    let bad = |why: String| StoreError::Corrupt(format!("pack header: {why}"));
    let (_, data_start) = header::PACK.detect(bytes)?;
    let n = bytes.len();
    let tail: [u8; 4] = bytes
        .get(n.saturating_sub(4)..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| bad(format!("a pack of {n} bytes has no header length")))?;
    let hlen = u32::from_le_bytes(tail) as usize;
    if hlen > MAX_HEADER || data_start + hlen + 4 > n {
        return Err(bad(format!(
            "header length {hlen} does not fit a pack of {n} bytes"
        )));
    }
    let start = n - 4 - hlen;
    let plain = cipher
        .open(&bytes[start..n - 4])
        .map_err(|e| bad(e.to_string()))?;
    let blobs: Vec<PackedBlob> = decompress_json(&plain, "pack header")?;
    // The writer puts the first blob right after the file header: a pack
    // whose header is damaged (read as one without) is caught here.
    if let Some(first) = blobs.iter().map(|b| b.offset).min() {
        if first != data_start as u64 {
            return Err(bad(format!(
                "the first blob is at byte {first}, not right after the file header ({data_start} bytes): the file header is damaged"
            )));
        }
    }
    for b in &blobs {
        let end = b.offset.checked_add(u64::from(b.len));
        if b.offset < data_start as u64 || end.is_none_or(|e| e > start as u64) {
            return Err(bad(format!(
                "blob {} at {}+{} lies outside the pack's data bytes {data_start}..{start}",
                b.id, b.offset, b.len
            )));
        }
    }
    Ok(blobs)
}

/// Every pack file in the repository.
pub(crate) fn list_packs(b: &dyn Backend) -> Result<Vec<PackId>, StoreError> {
    Ok(b.list("data")?
        .iter()
        .filter_map(|e| parse_id(backend::base(&e.key)))
        .collect())
}

pub(crate) fn parse_id(s: &str) -> Option<BlobId> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).ok()?;
    Some(BlobId(b))
}

/// JSON, compressed: metadata full of hex ids shrinks to about half.
pub(crate) fn compress_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(v).map_err(StoreError::json("metadata"))?;
    zstd::bulk::compress(&json, 3).map_err(StoreError::Io)
}

/// Most bytes [`decompress_json`] inflates to: damaged or hostile input
/// cannot make it take more memory than this.
pub(crate) const MAX_JSON: u64 = 4 << 30;

/// Reverses [`compress_json`].
pub(crate) fn decompress_json<T: serde::de::DeserializeOwned>(
    b: &[u8],
    what: &str,
) -> Result<T, StoreError> {
    use std::io::Read as _;
    let bad = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what}: {e}"));
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(b)
        .map_err(|e| bad(&e))?
        .take(MAX_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|e| bad(&e))?;
    if json.len() as u64 > MAX_JSON {
        return Err(bad(&"inflates past its bound"));
    }
    serde_json::from_slice(&json).map_err(StoreError::json(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One writer makes pack after pack: each is whole on its own (its id
    /// its hash, its header its blobs only, each blob where it says), and
    /// a failed write leaves the writer empty for the next.
    #[test]
    fn a_reused_writer_makes_whole_packs() {
        let d = tempfile::tempdir().unwrap();
        let b = backend::open(d.path()).unwrap();
        let cipher = Cipher::new(Some(&crate::store::crypto::MasterKey::random().unwrap()));
        let mut w = PackWriter::default();
        let mut made = Vec::new();
        for round in 0..3u8 {
            let plains: Vec<Vec<u8>> = (0..=round)
                .map(|i| vec![round * 10 + i; 1000 + usize::from(i)])
                .collect();
            for p in &plains {
                w.add(
                    BlobKind::Data,
                    crate::store::blob::encode(&cipher, p).unwrap(),
                );
            }
            let (id, blobs) = w.finish_and_reuse(&*b, &cipher).unwrap();
            assert!(w.is_empty());
            made.push((id, blobs, plains));
        }
        for (id, blobs, plains) in made {
            let bytes = b.read(&pack_key(&id)).unwrap();
            assert_eq!(BlobId(*blake3::hash(&bytes).as_bytes()), id);
            assert_eq!(read_header(&cipher, &bytes).unwrap(), blobs);
            assert_eq!(blobs.len(), plains.len());
            for (blob, plain) in blobs.iter().zip(&plains) {
                let at = blob.offset as usize;
                let stored = &bytes[at..at + blob.len as usize];
                let got =
                    crate::store::blob::decode(&cipher, &blob.id, blob.raw_len, stored).unwrap();
                assert_eq!(&got, plain);
            }
        }
        // A pack that cannot be written: an error, and the writer is empty.
        w.add(
            BlobKind::Data,
            crate::store::blob::encode(&cipher, b"x").unwrap(),
        );
        std::fs::write(d.path().join("a-file"), b"").unwrap();
        let gone = backend::open(&d.path().join("a-file")).unwrap();
        assert!(w.finish_and_reuse(&*gone, &cipher).is_err());
        assert!(w.is_empty());
        assert_eq!(w.len(), header::PACK.bytes().len());
    }

    #[test]
    fn one_buffer_reads_blobs_of_any_size_and_a_short_pack_is_named() {
        let d = tempfile::tempdir().unwrap();
        let b = backend::open(d.path()).unwrap();
        let pack: PackId = BlobId([3; 32]);
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        b.write(&pack_key(&pack), &bytes).unwrap();
        let mut buf = Vec::new();
        // Large, small, large again: each read is exactly its blob, never
        // bytes a larger one left in the buffer.
        for (offset, len) in [(0u64, 9_000u32), (100, 10), (5_000, 5_000), (1, 1)] {
            let got = read_blob_into(&*b, &pack, offset, len, &mut buf).unwrap();
            let (o, l) = (offset as usize, len as usize);
            assert_eq!(got, &bytes[o..o + l]);
        }
        let e = read_blob_into(&*b, &pack, 9_990, 20, &mut buf).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("pack is truncated") && msg.contains("10000 bytes"),
            "{msg}"
        );
    }
}
