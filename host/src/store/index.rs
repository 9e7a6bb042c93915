//! The index: which pack holds each blob. Index files list whole packs and
//! are written only after those packs are durable; a snapshot is written only
//! after the index files naming its blobs. Loaded into memory on open.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::crypto::{BlobId, Cipher};
use super::fsutil::write_atomic;
use super::pack::{compress_json, decompress_json, parse_id, PackId, PackedBlob};
use super::StoreError;

/// One index file: packs and their blobs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IndexFile {
    pub packs: Vec<IndexedPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedPack {
    pub pack: PackId,
    pub blobs: Vec<PackedBlob>,
}

/// Where a blob is.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub pack: PackId,
    pub blob: PackedBlob,
}

/// All index files, merged.
#[derive(Default)]
pub struct Index {
    pub blobs: HashMap<BlobId, Location>,
    /// Index file id → the packs it lists.
    pub files: HashMap<BlobId, Vec<PackId>>,
}

impl Index {
    pub fn load(root: &Path, cipher: &Cipher) -> Result<Self, StoreError> {
        let mut idx = Index::default();
        let dir = root.join("index");
        for e in fs::read_dir(&dir).map_err(|e| StoreError::at(&dir, e))? {
            let p = e.map_err(|e| StoreError::at(&dir, e))?.path();
            let Some(id) = p.file_name().and_then(|n| n.to_str()).and_then(parse_id) else {
                continue;
            };
            let file = read_index(&p, cipher)?;
            idx.add(id, &file);
        }
        Ok(idx)
    }

    pub fn add(&mut self, file_id: BlobId, file: &IndexFile) {
        let mut packs = Vec::new();
        for p in &file.packs {
            packs.push(p.pack);
            for b in &p.blobs {
                self.blobs.entry(b.id).or_insert(Location {
                    pack: p.pack,
                    blob: *b,
                });
            }
        }
        self.files.insert(file_id, packs);
    }
}

pub fn read_index(path: &Path, cipher: &Cipher) -> Result<IndexFile, StoreError> {
    let sealed = fs::read(path).map_err(|e| StoreError::at(path, e))?;
    let plain = cipher
        .open(&sealed)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
    decompress_json(&plain, &path.display().to_string())
}

/// Writes an index file durably; returns its id.
pub fn write_index(root: &Path, cipher: &Cipher, file: &IndexFile) -> Result<BlobId, StoreError> {
    let sealed = cipher.seal(&compress_json(file)?)?;
    let id = BlobId(*blake3::hash(&sealed).as_bytes());
    write_atomic(&root.join("index").join(id.to_hex()), &sealed)?;
    Ok(id)
}
